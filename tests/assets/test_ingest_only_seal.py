"""An ingest-only run seals what it wrote, with segments on (`assets.partial_seal`).

A segment run's pick takes the day-partitioned rows of its own domain and days only, so the
`input_files` and `quarantine` rows of days that were ingested (`hitl run --ingest-only`, or
the same stages materialised from the Dagster UI) and never run were left unsealed for ever,
and `hitl audit verify --lineage` named them. The ingestion stage now seals them through a
segment of its own when its run has no end-of-run seal; when the run has one, it leaves them
to it (sealing twice would only cost).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, asset, materialize

from assets.common import stage_key
from assets.ingestion import build_ingestion_assets
from assets.partial_seal import RUN_SEAL_STAGE
from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
from hitl_gate.audit.run_seal import (
    Scope,
    seal_with_segment,
    segment_id,
    verify_home,
    verifying_session,
)
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.settings import HitlSettings
from pipelines.resources import build_resources
from tests.assets.homes import tmp_home
from tests.assets.test_ingestion import _landed_a_minute_ago
from tests.unit.ingest.test_day_batch import applications

pytestmark = pytest.mark.slow  # SoftHSM2 signs the segment's and the global checkpoints

DAYS = (date(2018, 1, 3), date(2018, 1, 4))


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _land(settings: HitlSettings, domain: DomainConfig) -> None:
    for n, day in enumerate(DAYS):
        folder = settings.paths.landing / domain.landing_subdir / day.isoformat()
        folder.mkdir(parents=True)
        good = applications(domain, 3, first=10 * n)
        bad = applications(domain, 1, first=10 * n + 5).with_columns(annual_income=pl.lit("n/a"))
        pl.concat([good, bad]).write_csv(folder / "apps.csv")  # a quarantined row too
        _landed_a_minute_ago(folder)


def _run_seal_stand_in(domain: DomainConfig):  # noqa: ANN202
    """An asset under the end-of-run seal's key, downstream of ingestion: a job that holds it
    has the shape of the daily job, whose `--ingest-only` selection leaves it out."""

    @asset(
        key=stage_key(domain, RUN_SEAL_STAGE),
        deps=[stage_key(domain, "validated_cases")],
        partitions_def=build_ingestion_assets(domain)[0].partitions_def,
        group_name=domain.name,
    )
    def run_seal() -> None:  # stand-in: the run's own seal is not under test here
        return None

    return run_seal


def _ingest(
    settings: HitlSettings, domain: DomainConfig, day: date, selection: list[AssetKey] | None
) -> int:
    """Materialise `day` in a job holding the ingestion stages and the end-of-run seal's key
    (`selection`: what the run takes of it; None: all); the entries validated_cases sealed."""
    assets = [*build_ingestion_assets(domain), _run_seal_stand_in(domain)]
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets, partition_key=day.isoformat(), resources=build_resources(settings),
            instance=instance, selection=selection,
        )  # fmt: skip
        assert result.success
        metadata = result.asset_materializations_for_node(f"{domain.name}__validated_cases")[
            0
        ].metadata
    return int(metadata["audit_entries_appended"].value)


def _verify(settings: HitlSettings) -> list[str]:
    key = public_key_hex(checkpoint_signer(settings.paths, settings.audit_keys))
    with verifying_session(settings.paths) as con:
        report = verify_home(con, settings.paths, key, lineage=True)
    return [str(problem) for problem in report.problems]


def test_an_ingest_only_run_seals_its_days_through_its_own_segment(
    tmp_path: Path, domain: DomainConfig
) -> None:
    settings = HitlSettings(paths=tmp_home(tmp_path), audit_segments=True)
    _land(settings, domain)
    ingest_only = [stage_key(domain, "raw_cases"), stage_key(domain, "validated_cases")]
    for day in DAYS:
        assert _ingest(settings, domain, day, ingest_only) > 0
    with audit_connection(settings.paths.audit_db, read_only=True) as con:
        leaves = con.execute("SELECT segment_id FROM audit_segment_leaves").fetchall()
        pending = con.execute("SELECT count(*) FROM audit_segment_pending").fetchall()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchall()
    assert len(leaves) == 2  # one segment per ingestion run, named by the stage's own run id
    assert all(s.startswith(f"{domain.name}.") for (s,) in leaves)
    assert all(s.endswith("-validated_cases") for (s,) in leaves)
    assert pending == [(0,)] and quarantined == [(2,)]
    # The run of the first day only, as the claims home runs days 1-10 of 28: the second
    # day, which no run covers, was sealed by its ingestion; nothing is sealed twice.
    segments = Segments(settings.paths.segments_dir)
    day_run = segment_id(domain.name, [DAYS[0]], "run-day-1")
    signer = checkpoint_signer(settings.paths, settings.audit_keys)
    again = seal_with_segment(
        lambda attachable=(): audit_connection(settings.paths.audit_db, attachable=attachable),
        segments, day_run, "run-day-1", signer, settings.paths.checkpoints_dir,
        memory_limit=None, scope=Scope(domain.name, (DAYS[0],)),
    )  # fmt: skip
    assert again.appended == 0
    assert _verify(settings) == []


def test_a_run_with_its_own_seal_leaves_the_rows_to_it(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The whole job (the end-of-run seal selected): the ingestion stage seals nothing, and
    with segments off neither does an ingest-only run (the next seal takes every row)."""
    on = HitlSettings(paths=tmp_home(tmp_path / "on"), audit_segments=True)
    _land(on, domain)
    assert _ingest(on, domain, DAYS[0], None) == 0
    off = HitlSettings(paths=tmp_home(tmp_path / "off"), audit_segments=False)
    _land(off, domain)
    assert _ingest(off, domain, DAYS[0], [stage_key(domain, "raw_cases"),
                                          stage_key(domain, "validated_cases")]) == 0  # fmt: skip
    for settings in (on, off):
        problems = _verify(settings)
        assert any("input_files" in p and "not in the audit log" in p for p in problems)

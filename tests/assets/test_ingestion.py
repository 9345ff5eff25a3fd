"""The ingestion assets materialised on a few landed rows in a tmp_path home."""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from assets.ingestion import build_ingestion_assets
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.home import HitlPaths
from pipelines.resources import build_resources
from tests.assets.homes import tmp_home
from tests.unit.ingest.test_day_batch import applications

DAY = date(2018, 1, 3)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def run_ingestion(paths: HitlPaths, domain: DomainConfig, instance: DagsterInstance):
    _landed_a_minute_ago(paths.landing / domain.landing_subdir / DAY.isoformat())
    return materialize(
        build_ingestion_assets(domain),
        partition_key=DAY.isoformat(),
        resources=build_resources(paths),
        instance=instance,
    )


def _landed_a_minute_ago(folder: Path) -> None:
    """Date the day's entries a minute back, as files a scheduled run finds: the settle check
    (default interval) still looks at each of them, without sleeping out the interval for
    files the test wrote a moment ago. Growing files are tests/unit/ingest's (bad inputs)."""
    stamp = time.time() - 60
    for entry in folder.iterdir():
        os.utime(entry, (stamp, stamp), follow_symlinks=False)


def test_validated_cases_accepts_good_rows_and_quarantines_bad_ones(
    tmp_path: Path, domain: DomainConfig
) -> None:
    paths = tmp_home(tmp_path)
    folder = paths.landing / domain.landing_subdir / DAY.isoformat()
    folder.mkdir(parents=True)
    bad = applications(domain, 1, first=4).with_columns(annual_income=pl.lit("n/a"))
    pl.concat([applications(domain, 4), bad]).write_csv(folder / "apps.csv")
    # The same four cases again in other bytes: registered as a file, its rows quarantined.
    applications(domain, 4).write_csv(folder / "apps_copy.csv")

    with DagsterInstance.ephemeral() as instance:
        result = run_ingestion(paths, domain, instance)
        assert result.success
        validated = result.asset_materializations_for_node(f"{domain.name}__validated_cases")[
            0
        ].metadata
        raw = result.asset_materializations_for_node(f"{domain.name}__raw_cases")[0].metadata

    assert raw["files"].value == 2
    assert validated["rows_read"].value == 9
    assert validated["rows_accepted"].value == 4
    assert validated["rows_quarantined"].value == 5  # the bad row, and the copy's 4 repeats
    assert validated["case_ids_held_by_other_partitions"].value == 0
    assert validated["contract_version"].value == domain.contract.version
    with audit_connection(paths.audit_db) as con:
        files = query_frame(con, "SELECT rows_read, rows_accepted FROM input_files ORDER BY 1")
    assert files.rows() == [(4, 0), (5, 4)]


def test_a_rerun_of_the_day_leaves_the_same_accounting(
    tmp_path: Path, domain: DomainConfig
) -> None:
    paths = tmp_home(tmp_path)
    folder = paths.landing / domain.landing_subdir / DAY.isoformat()
    folder.mkdir(parents=True)
    applications(domain, 3).write_csv(folder / "apps.csv")
    with DagsterInstance.ephemeral() as instance:
        for _ in range(2):
            result = run_ingestion(paths, domain, instance)
            assert result.success
        metadata = result.asset_materializations_for_node(f"{domain.name}__validated_cases")[
            0
        ].metadata
    assert metadata["rows_accepted"].value == 3
    with audit_connection(paths.audit_db) as con:
        assert query_frame(con, "SELECT count(*) AS n FROM input_files")["n"].item() == 1


def test_every_entry_of_the_folder_is_ingested_or_refused_and_the_check_balances(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """Literal names, refusals by convention, and files seen = ingested + refused in the DB."""
    from hitl_gate.ingest.landing_registry import files_balance

    paths = tmp_home(tmp_path)
    folder = paths.landing / domain.landing_subdir / DAY.isoformat()
    folder.mkdir(parents=True)
    applications(domain, 2).write_csv(folder / "x1.csv")
    applications(domain, 3, first=10).write_csv(folder / "x[1].csv")  # not a pattern for x1.csv
    applications(domain, 1, first=20).write_csv(folder / "apps\nINFO fake.csv")
    (folder / ".upload.csv").write_text("partial")
    (folder / "apps.csv.part").write_text("partial")
    (folder / "notes.txt").write_text("hello")
    applications(domain, 1, first=30).write_csv(folder / "apps.tsv")  # format not allowed
    (folder / "sub").mkdir()

    with DagsterInstance.ephemeral() as instance:
        result = run_ingestion(paths, domain, instance)
        assert result.success
        raw = result.asset_materializations_for_node(f"{domain.name}__raw_cases")[0].metadata
        validated = result.asset_materializations_for_node(f"{domain.name}__validated_cases")[
            0
        ].metadata
    assert raw["files_seen"].value == 8
    assert raw["files"].value == 3
    assert raw["files_refused"].value == 5
    assert raw["files_refused_by_reason"].value == {
        "hidden": 1,
        "temporary": 1,
        "unsupported_type": 2,
        "not_a_file": 1,
    }
    assert "\\n" in raw["files_taken"].value and "\n" + "INFO" not in raw["files_taken"].value
    assert validated["rows_read"].value == 6 and validated["rows_accepted"].value == 6
    with audit_connection(paths.audit_db) as con:
        balance = files_balance(con, domain.name, [DAY])
        reasons = query_frame(con, "SELECT reason, message FROM landing_refusals ORDER BY 1")
    assert balance.rows() == [(DAY, 8, 3, 5, True)]
    assert all("\n" not in m for m in reasons["message"])

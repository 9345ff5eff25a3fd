"""The landing-zone sensor: files landing in a day that already ran start one re-run of it."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dagster import AssetMaterialization, DagsterInstance, SkipReason, build_sensor_context

from assets.common import stage_key
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.ingest.landing import discover_landing_files
from hitl_gate.ingest.landing_registry import register_files
from pipelines.resources import AuditDatabase, LandingZone
from pipelines.sensors import build_landing_sensor
from tests.blank_audit_db import blank_if_missing

CASES = Path(__file__).parents[2] / "data" / "bad_inputs" / "cases"
RAN, NOT_RUN = date(2018, 1, 5), date(2018, 1, 7)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Landing:
    """A home with one day that ran (its file registered), a real instance and the sensor."""

    def __init__(self, paths: HitlPaths, instance: DagsterInstance) -> None:
        self.paths, self.instance = paths, instance
        self.domain = load_domain("consumer_credit")
        self.sensor = build_landing_sensor(self.domain)
        self.folder(RAN).joinpath("first.csv").write_bytes((CASES / "bom" / "bom.csv").read_bytes())
        self.register(RAN)
        instance.report_runless_asset_event(
            AssetMaterialization(stage_key(self.domain, "raw_cases"), partition=RAN.isoformat())
        )

    def folder(self, day: date) -> Path:
        path = self.paths.landing / self.domain.landing_subdir / day.isoformat()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def register(self, day: date) -> None:
        """What a run of `day` does to the registry."""
        files = discover_landing_files(self.paths.landing, self.domain.landing_subdir, day)
        with audit_connection(self.paths.audit_db) as con:
            register_files(con, self.domain.name, files, "run-x", datetime.now(UTC))

    def evaluate(self, settle_seconds: float = 0.0) -> list | SkipReason:
        resources = {
            "landing": LandingZone(root=str(self.paths.landing), settle_seconds=settle_seconds),
            "audit_db": AuditDatabase(
                database=str(self.paths.audit_db),
                checkpoint_dir=str(self.paths.checkpoints_dir),
                signing_key_file=str(self.paths.audit_key_file),
            ),
        }
        context = build_sensor_context(instance=self.instance, resources=resources)
        result = self.sensor(context)
        return result if isinstance(result, SkipReason) else list(result)


@pytest.fixture
def landing(hitl_paths: HitlPaths):
    blank_if_missing(hitl_paths.audit_db)  # the home's new audit database
    with DagsterInstance.ephemeral() as instance:
        yield Landing(hitl_paths, instance)


def test_nothing_new_nothing_requested(landing: Landing) -> None:
    assert isinstance(landing.evaluate(), SkipReason)


def test_a_late_file_requests_one_rerun_keyed_by_its_hash_and_is_counted_once(
    landing: Landing,
) -> None:
    late = landing.folder(RAN) / "late.csv"
    late.write_bytes(
        (CASES / "several_problems_one_row" / "several_problems_one_row.csv").read_bytes()
    )
    (landing.folder(RAN) / ".partial.csv").write_text("uploading")  # hidden: not yet landed
    (request,) = landing.evaluate()
    assert request.run_key == _sha(late) and request.partition_key == RAN.isoformat()
    assert request.tags["hitl/late_files"] == "late.csv"
    (again,) = landing.evaluate()
    assert again.run_key == request.run_key  # Dagster launches one run per run key
    landing.register(RAN)  # the re-run takes the file in
    assert isinstance(landing.evaluate(), SkipReason)


def test_known_bytes_and_days_that_did_not_run_are_left_alone(landing: Landing) -> None:
    shutil.copy(landing.folder(RAN) / "first.csv", landing.folder(RAN) / "again.csv")
    shutil.copy(CASES / "bom" / "bom.csv", landing.folder(NOT_RUN) / "new_day.csv")
    assert isinstance(landing.evaluate(), SkipReason)  # the schedule takes new days


def test_several_new_files_of_a_day_are_one_run(landing: Landing) -> None:
    a, b = landing.folder(RAN) / "a.csv", landing.folder(RAN) / "b.jsonl"
    a.write_text("application_id\nX-1\n")
    b.write_text('{"application_id": "X-2"}\n')
    (request,) = landing.evaluate()
    combined = "+".join(sorted([_sha(a), _sha(b)]))
    assert request.run_key == hashlib.sha256(combined.encode()).hexdigest()
    assert request.tags["hitl/late_files"] == "a.csv,b.jsonl"


def test_a_file_still_settling_is_not_offered_until_it_has_settled(landing: Landing) -> None:
    """A file modified within the settle interval may still be written: no run for it yet."""
    path = landing.folder(RAN) / "late.csv"
    path.write_bytes((CASES / "all_rows_bad" / "all_rows_bad.csv").read_bytes())
    assert isinstance(landing.evaluate(settle_seconds=3600), SkipReason)
    old = time.time() - 7200
    os.utime(path, (old, old))
    (request,) = landing.evaluate(settle_seconds=3600)
    assert request.partition_key == RAN.isoformat()

"""End to end on the shared demo home: late, repeated and corrected files, and case ids that
another day already holds, through the real Dagster pipeline and the `hitl` commands."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from tests.e2e.landed import settled

pytestmark = pytest.mark.e2e

EARLIER, DAY = "2018-01-05", "2018-01-06"
TABLES = ("decisions", "input_files", "quarantine", "file_versions", "accepted_cases")


def _counts(paths: HitlPaths) -> dict[str, int]:
    with audit_connection(paths.audit_db, read_only=True) as con:
        return {t: int(scalar(con, f"SELECT count(*) FROM {t}")) for t in TABLES}


def _day_file(paths: HitlPaths, day: str) -> Path:
    return next((paths.landing / "applications" / day).glob("applications_*.csv"))


def _run(paths: HitlPaths) -> None:
    main(["--home", str(paths.home), "run", "--partition", DAY])


def _landing_sensor(paths: HitlPaths) -> list:
    """The landing sensor's requests for DAY, evaluated on the demo's own instance and home."""
    from dagster import DagsterInstance, SkipReason, build_sensor_context

    from hitl_gate.core.domain import load_domain
    from pipelines.resources import build_resources
    from pipelines.sensors import build_landing_sensor

    resources = build_resources(paths)
    with DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        context = build_sensor_context(
            instance=instance,
            resources={k: resources[k] for k in ("landing", "audit_db")},
        )
        result = build_landing_sensor(load_domain("consumer_credit"))(context)
    requests = [] if isinstance(result, SkipReason) else list(result)
    return [r for r in requests if r.partition_key == DAY]  # other tests may touch other days


def test_late_repeated_and_corrected_files(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = demo_home.landing / "applications" / DAY
    header, first_today, *_ = _day_file(demo_home, DAY).read_text().splitlines()
    _, first_earlier, *_ = _day_file(demo_home, EARLIER).read_text().splitlines()
    held_elsewhere = first_earlier.split(",")[0]
    new_case = ",".join(["LC18Q1-LATE-1", *first_today.split(",")[1:]])
    before = _counts(demo_home)

    # The same bytes as an earlier day's file, and a late file with one new and one known case.
    shutil.copy(_day_file(demo_home, EARLIER), folder / "redelivered.csv")
    late = folder / "late.csv"
    late.write_text("\n".join([header, new_case, first_earlier]) + "\n")
    settled(folder / "redelivered.csv", late)  # complete, not still written
    # The landing sensor asks for one re-run of the day, keyed by the late file's hash only
    # (the redelivered bytes are already ingested); once the day re-ran it asks for nothing.
    (request,) = _landing_sensor(demo_home)
    assert request.partition_key == DAY
    assert request.run_key == hashlib.sha256(late.read_bytes()).hexdigest()
    _run(demo_home)
    assert _landing_sensor(demo_home) == []
    after = _counts(demo_home)
    day = date.fromisoformat(DAY)
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        files = dict(
            query_frame(
                con,
                "SELECT regexp_extract(file_path, '[^/]+$'), status FROM input_files "
                "WHERE partition_date = ?",
                [day],
            ).rows()
        )
        moved = query_frame(
            con,
            "SELECT * FROM quarantine WHERE case_id = ? AND partition_date = ?",
            [held_elsewhere, day],
        )
        held_in = scalar(
            con, "SELECT partition_date FROM decisions WHERE case_id = ?", [held_elsewhere]
        )
        balanced = scalar(
            con, "SELECT balanced FROM partition_accounting WHERE partition_date = ?", [day]
        )
        contracts = scalar(
            con, "SELECT count(*) FROM schema_versions WHERE domain = 'consumer_credit'"
        )
    assert files["redelivered.csv"] == "duplicate" and files["late.csv"] == "accepted"
    assert moved["check_name"].to_list() == ["duplicate_case_id_across_partitions"]
    assert str(held_in) == EARLIER and balanced and contracts == 1
    assert after["decisions"] == before["decisions"] + 1  # only the new case
    assert after["file_versions"] == before["file_versions"] + 1  # late.csv; the copy is known

    capsys.readouterr()
    main(["--home", str(demo_home.home), "quarantine", "list", "--partition", DAY])
    listed = capsys.readouterr().out
    assert "late.csv" in listed and "duplicate_case_id_across_partitions" in listed
    assert "redelivered.csv" not in listed  # a repeated file is not quarantined, only recorded
    main(["--home", str(demo_home.home), "quarantine", "show", held_elsewhere])
    assert "was already accepted in partition 2018-01-05" in capsys.readouterr().out

    # Re-running the day changes nothing.
    _run(demo_home)
    assert _counts(demo_home) == after

    # A corrected late file under the same name is version 2 and its new case is decided once.
    late.write_text("\n".join([header, new_case, new_case.replace("LATE-1", "LATE-2")]) + "\n")
    settled(late)
    _run(demo_home)
    corrected = _counts(demo_home)
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        versions = query_frame(
            con, "SELECT version FROM file_versions WHERE file_name = 'late.csv' ORDER BY 1"
        )["version"].to_list()
    assert versions == [1, 2]
    assert corrected["decisions"] == after["decisions"] + 1

    # `hitl ingest check` sees what the registry holds: a case accepted on another day.
    late.write_text("\n".join([header, first_earlier]) + "\n")
    with pytest.raises(SystemExit):
        main(["--home", str(demo_home.home), "ingest", "check", str(late)])
    checked = capsys.readouterr().out
    assert "1 already accepted on other days" in checked
    assert f"'{held_elsewhere}' was already accepted in partition {EARLIER}" in checked

    fields = first_earlier.split(",")
    fields[header.split(",").index("homeownership")] = "CASTLE"
    late.write_text("\n".join([header, ",".join(fields)]) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(demo_home.home), "ingest", "check", str(late)])
    assert exit_info.value.code == 1
    assert "rows read 1, accepted 0, quarantined 1" in capsys.readouterr().out
    late.unlink()  # leave the shared home's landing zone as the next run expects it

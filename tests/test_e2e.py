"""End to end: the demo on the real sample in a temporary home, with every real component.

One module-scoped demo run (Dagster in process, Feast, MLflow, DuckDB, openpyxl) feeds the
tests below; they then exercise the CLI, the sensor, idempotency and bad input on that state.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from hitl_gate.audit.store import audit_connection, query_frame, scalar
from hitl_gate.cli import main
from hitl_gate.home import HitlPaths

pytestmark = pytest.mark.e2e

SAMPLE_SIZE = 10_000
COUNTED_TABLES = (
    "decisions",
    "verdicts",
    "executions",
    "review_batches",
    "verdict_files",
    "input_files",
    "audit_log",
)


def _counts(paths: HitlPaths) -> dict[str, int]:
    with audit_connection(paths.audit_db, read_only=True) as con:
        return {t: int(scalar(con, f"SELECT count(*) FROM {t}")) for t in COUNTED_TABLES}


def test_every_sample_application_is_accounted_for(demo_home: HitlPaths) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        status = dict(query_frame(con, "SELECT status, cases FROM case_status_summary").iter_rows())
        unbalanced = scalar(con, "SELECT count(*) FROM partition_accounting WHERE NOT balanced")
        days = scalar(con, "SELECT count(*) FROM partition_accounting")
        incomplete = scalar(
            con,
            "SELECT count(*) FROM decisions WHERE model_version IS NULL OR policy_digest IS NULL "
            "OR feature_digest IS NULL OR source_sha256 IS NULL OR source_row IS NULL",
        )
    assert sum(status.values()) == SAMPLE_SIZE
    assert status["executed"] > 0 and status["pending_review"] > 0
    assert days == 90 and unbalanced == 0
    assert incomplete == 0


def test_review_loop_closed_by_the_demo_reviewer(demo_home: HitlPaths) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        verdicts = query_frame(con, "SELECT * FROM verdicts")
        by_reviewer = scalar(con, "SELECT count(*) FROM executions WHERE decided_by = 'reviewer'")
    assert verdicts.height > 0
    assert set(verdicts["reviewer_id"]) == {"DEMO-reviewer"}
    assert by_reviewer == verdicts.height
    assert not list((demo_home.review / "inbox").glob("*.xlsx")), "inbox not cleared"
    assert len(list((demo_home.review / "archive").iterdir())) == 1


def test_audit_trace_prints_the_full_path(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        case_id = scalar(con, "SELECT min(case_id) FROM verdicts")
    main(["--home", str(demo_home.home), "audit", "trace", str(case_id)])
    out = capsys.readouterr().out
    for expected in (
        "applications_2018-",  # input file
        "credit_scorecard_v1",  # feature service
        "consumer_credit_pd",  # model
        "consumer_credit-v1",  # policy version
        "human_review",
        "DEMO-reviewer",
        "executed",
    ):
        assert expected in out, f"{expected!r} missing from trace:\n{out}"


def test_second_demo_changes_nothing(demo_home: HitlPaths) -> None:
    before = _counts(demo_home)
    batches = sorted(p.name for p in (demo_home.review / "batches").iterdir())
    main(["--home", str(demo_home.home), "demo"])
    assert _counts(demo_home) == before
    assert sorted(p.name for p in (demo_home.review / "batches").iterdir()) == batches


def _second_batch(paths: HitlPaths) -> tuple[str, Path]:
    with audit_connection(paths.audit_db, read_only=True) as con:
        batch_id = scalar(
            con,
            "SELECT min(batch_id) FROM review_batches WHERE batch_id NOT IN "
            "(SELECT DISTINCT batch_id FROM verdicts)",
        )
    return str(batch_id), paths.review / "batches" / str(batch_id)


def test_cli_ingest_validates_rows_and_is_exactly_once(
    demo_home: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hitl_gate.review.demo_reviewer import fill_demo_verdicts

    batch_id, folder = _second_batch(demo_home)
    returned = fill_demo_verdicts(folder, tmp_path / "returned.xlsx", reviewer_id="analyst-7")
    workbook = load_workbook(returned)
    sheet = workbook["cases"]
    header = [c.value for c in sheet[1]]
    sheet.cell(2, header.index("loan_amount") + 1).value = 1.0  # edited context: must be refused
    workbook.save(returned)
    rows = sheet.max_row - 1
    before = _counts(demo_home)

    main(["--home", str(demo_home.home), "review", "ingest", str(returned)])
    out = capsys.readouterr().out
    after = _counts(demo_home)
    assert f"batch {batch_id}, {rows - 1} verdicts accepted, 1 rejected" in out
    assert after["verdicts"] == before["verdicts"] + rows - 1
    assert after["executions"] == before["executions"] + rows - 1

    main(["--home", str(demo_home.home), "review", "ingest", str(returned)])
    assert _counts(demo_home) == after, "the same file must not be applied twice"


def test_sensor_requests_one_run_per_returned_file(demo_home: HitlPaths, tmp_path: Path) -> None:
    from dagster import DagsterInstance, build_sensor_context

    from hitl_gate.domain import load_domain
    from hitl_gate.review.intake import file_sha256
    from pipelines.resources import ReviewWorkspace
    from pipelines.sensors import build_verdict_sensor

    batch_id, folder = _second_batch(demo_home)
    inbox = tmp_path / "review" / "inbox"
    inbox.mkdir(parents=True)
    dropped = shutil.copy(folder / "cases.xlsx", inbox / "returned.xlsx")
    sensor = build_verdict_sensor(load_domain("consumer_credit"))
    review = ReviewWorkspace(review_dir=str(tmp_path / "review"), secrets_dir=str(tmp_path))
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources={"review": review})
        requests = list(sensor(context))
    assert len(requests) == 1
    assert requests[0].run_key == file_sha256(Path(dropped))
    assert (
        requests[0].partition_key
        == date(
            int(batch_id.split("-")[1][:4]),
            int(batch_id.split("-")[1][4:6]),
            int(batch_id.split("-")[1][6:]),
        ).isoformat()
    )


def test_bad_rows_are_quarantined_and_counted(demo_home: HitlPaths) -> None:
    day = "2018-01-02"
    folder = demo_home.landing / "applications" / day
    good = next(folder.glob("applications_*.csv")).read_text(encoding="utf-8").splitlines()
    header, first = good[0], good[1].split(",")
    late = [header]
    dup = list(first)  # the same case id again: must be quarantined, not decided twice
    late.append(",".join(dup))
    bad_amount = list(first)
    bad_amount[0] = "LC18Q1-LATE1"
    bad_amount[header.split(",").index("loan_amount")] = "lots"
    late.append(",".join(bad_amount))
    (folder / "late_arrivals.csv").write_text("\n".join(late) + "\n", encoding="utf-8")
    (folder / "garbage.csv").write_bytes(b"\xff\xfe\x00not a csv at all")

    main(["--home", str(demo_home.home), "run", "--partition", day])
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        quarantine = query_frame(
            con, "SELECT * FROM quarantine WHERE partition_date = ?", [date.fromisoformat(day)]
        )
        accounting = query_frame(
            con,
            "SELECT * FROM partition_accounting WHERE partition_date = ?",
            [date.fromisoformat(day)],
        ).row(0, named=True)
    checks = set(quarantine["check_name"])
    assert "duplicate_case_id" in checks and "type" in checks
    assert quarantine.filter(quarantine["file_path"].str.ends_with("garbage.csv")).height == 1
    assert accounting["balanced"]
    assert accounting["rows_quarantined"] >= 2

"""`hitl ingest check`: one file against the contract, in plain words, writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.home import HitlPaths

CASES = Path(__file__).parents[2] / "data" / "bad_inputs" / "cases"


def test_check_names_rows_columns_and_counts(
    hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CASES / "several_problems_one_row" / "several_problems_one_row.csv"
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(hitl_paths.home), "ingest", "check", str(path)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "rows read 3, accepted 2, quarantined 1" in out
    assert "loan_amount: 1 row, value does not have the declared type [type]" in out
    assert "column 'interest_rate' row 2: '-1' is below the minimum 0" in out
    assert not hitl_paths.audit_db.exists(), "a check must not write anything"


def test_check_of_a_rejected_file_says_why(
    hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CASES / "semicolon_delimiter" / "semicolon_delimiter.csv"
    with pytest.raises(SystemExit):
        main(["--home", str(hitl_paths.home), "ingest", "check", str(path)])
    assert "REJECTED WHOLE FILE (missing_columns)" in capsys.readouterr().out


def test_check_of_a_clean_file_exits_zero(
    hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--home", str(hitl_paths.home), "ingest", "check", str(CASES / "bom" / "bom.csv")])
    assert "OK: every row satisfies the contract" in capsys.readouterr().out


def test_check_refuses_other_file_types(hitl_paths: HitlPaths, tmp_path: Path) -> None:
    other = tmp_path / "cases.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(SystemExit, match="not a landing file type"):
        main(["--home", str(hitl_paths.home), "ingest", "check", str(other)])


def test_check_reports_case_ids_accepted_on_other_days(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import date

    import polars as pl

    from hitl_gate.core.database import audit_connection
    from hitl_gate.ingest.landing_registry import record_accepted_cases

    day_folder = tmp_path / "landing" / "applications" / "2018-01-04"
    day_folder.mkdir(parents=True)
    path = day_folder / "bom.csv"
    path.write_bytes((CASES / "bom" / "bom.csv").read_bytes())
    main(["--home", str(hitl_paths.home), "ingest", "check", str(path)])
    assert "ids on other days were not checked" in capsys.readouterr().out  # no home yet

    held = pl.DataFrame(
        {
            "partition_date": [date(2018, 1, 3), date(2018, 1, 4)],
            "application_id": ["BAD-00001", "BAD-00002"],
            "_source_sha256": ["0" * 64] * 2,
            "_source_row": [1, 2],
        }
    )
    with audit_connection(hitl_paths.audit_db) as con:
        days = [date(2018, 1, 3), date(2018, 1, 4)]
        record_accepted_cases(con, "consumer_credit", held, "application_id", days, "run-0")
    before = hitl_paths.audit_db.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(hitl_paths.home), "ingest", "check", str(path)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "1 already accepted on other days" in out  # BAD-00002 is this day's own case
    assert "case id was already accepted on another day" in out
    assert "'BAD-00001' was already accepted in partition 2018-01-03" in out
    assert hitl_paths.audit_db.read_bytes() == before, "a check must not write anything"

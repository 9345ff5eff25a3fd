"""The ingestion registry on a real DuckDB audit file: file versions, duplicates, contracts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import ColumnContract, ContractConfig
from hitl_gate.ingest.landing import (
    CROSS_PARTITION_CHECK,
    discover_landing_files,
    ingest_files,
    withhold_known_cases,
)
from hitl_gate.ingest.landing_registry import (
    ContractVersionConflict,
    RegisteredFile,
    cases_accepted_elsewhere,
    record_accepted_cases,
    record_contract,
    register_files,
)
from hitl_gate.quality.contract import contract_digest

NOW = datetime(2018, 2, 1, tzinfo=UTC)
DAY1, DAY2 = date(2018, 1, 3), date(2018, 1, 4)
CONTRACT = ContractConfig(
    version=1,
    columns={
        "case_id": ColumnContract(type="str", nullable=False),
        "amount": ColumnContract(type="float", nullable=False, min=0),
    },
)


def _write(root: Path, day: date, name: str, text: str) -> None:
    folder = root / "cases" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def _register(
    con: duckdb.DuckDBPyConnection, root: Path, day: date, run: str = "r1"
) -> list[RegisteredFile]:
    return register_files(con, "d", discover_landing_files(root, "cases", day), run, NOW)


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_rerun_finds_the_same_versions_and_records_nothing_new(tmp_path: Path) -> None:
    _write(tmp_path, DAY1, "a.csv", "case_id,amount\nc1,1\n")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        first = _register(con, tmp_path, DAY1)
        again = _register(con, tmp_path, DAY1, run="r2")
        rows = query_frame(con, "SELECT * FROM file_versions")
    assert [(r.version, r.duplicate_of) for r in first] == [(1, None)]
    assert [(r.version, r.duplicate_of) for r in again] == [(1, None)]
    assert rows.height == 1 and rows["run_id"].to_list() == ["r1"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_changed_file_under_the_same_name_is_the_next_version(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "audit.duckdb") as con:
        _write(tmp_path, DAY1, "a.csv", "case_id,amount\nc1,-1\n")
        v1 = _register(con, tmp_path, DAY1)
        _write(tmp_path, DAY1, "a.csv", "case_id,amount\nc1,1\n")  # corrected and re-delivered
        v2 = _register(con, tmp_path, DAY1, run="r2")
        rows = query_frame(con, "SELECT file_name, version, run_id FROM file_versions ORDER BY 2")
    assert v1[0].version == 1 and v2[0].version == 2 and v2[0].duplicate_of is None
    assert v1[0].file.sha256 != v2[0].file.sha256
    assert rows.rows() == [("a.csv", 1, "r1"), ("a.csv", 2, "r2")]


@pytest.mark.usefixtures("fresh_audit_db")
def test_the_same_bytes_twice_are_ingested_once(tmp_path: Path) -> None:
    text = "case_id,amount\nc1,1\n"
    _write(tmp_path, DAY1, "a.csv", text)
    _write(tmp_path, DAY1, "b.csv", text)  # same day, another name
    _write(tmp_path, DAY2, "a.csv", text)  # re-delivered into the next day
    with audit_connection(tmp_path / "audit.duckdb") as con:
        day1 = _register(con, tmp_path, DAY1)
        day2 = _register(con, tmp_path, DAY2)
        stored = query_frame(con, "SELECT partition_date FROM file_versions")
    original = str(day1[0].file.path)
    assert [r.duplicate_of for r in day1] == [None, original]
    assert [r.duplicate_of for r in day2] == [original]
    assert stored["partition_date"].to_list() == [DAY1]


@pytest.mark.usefixtures("fresh_audit_db")
def test_case_ids_accepted_in_another_partition_are_quarantined(tmp_path: Path) -> None:
    _write(tmp_path, DAY1, "a.csv", "case_id,amount\nc1,1\nc2,2\n")
    _write(tmp_path, DAY2, "b.csv", "case_id,amount\nc3,3\nc1,4\nc2,-5\n")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        one = ingest_files(discover_landing_files(tmp_path, "cases", DAY1), CONTRACT, "case_id")
        record_accepted_cases(con, "d", one.accepted, "case_id", [DAY1], "r1")
        two = ingest_files(discover_landing_files(tmp_path, "cases", DAY2), CONTRACT, "case_id")
        known = cases_accepted_elsewhere(con, "d", two.accepted["case_id"], [DAY2])
        # A re-run of day 1 does not see its own cases as held elsewhere.
        own = cases_accepted_elsewhere(con, "d", one.accepted["case_id"], [DAY1])
    assert known.select("case_id", "partition_date").rows() == [("c1", DAY1)] and own.is_empty()
    result = withhold_known_cases(two, known, "case_id")
    assert result.accepted["case_id"].to_list() == ["c3"]
    moved = result.quarantine.filter(pl.col("check") == CROSS_PARTITION_CHECK).row(0, named=True)
    assert (moved["row_number"], moved["case_id"], moved["partition_date"]) == (2, "c1", DAY2)
    assert (
        moved["message"]
        == "column 'case_id' row 2: 'c1' was already accepted in partition 2018-01-03"
    )
    files = result.files.row(0, named=True)
    assert (files["rows_read"], files["rows_accepted"], files["rows_quarantined"]) == (3, 1, 2)


@pytest.mark.usefixtures("fresh_audit_db")
def test_ids_stored_before_ids_were_canonical_still_hold_their_canonical_id(
    tmp_path: Path,
) -> None:
    from tests.unit.audit.tamper_home import add_row

    # Stored by an older version that kept ids as they came: a trailing space, full-width
    # letters, a leading no-break space; and one decided (not only accepted) with a tab.
    legacy = pl.DataFrame(
        {
            "partition_date": [DAY1] * 3,
            "case_id": ["c1 ", "\uff43\uff12", "\u00a0c3"],
            "_source_sha256": ["old"] * 3,
            "_source_row": [1, 2, 3],
        }
    )
    _write(tmp_path, DAY2, "b.csv", "case_id,amount\nc1,1\nc2,2\nc3,3\nc4,4\nc5,5\n")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        record_accepted_cases(con, "d", legacy, "case_id", [DAY1], "r0")
        add_row(con, "decisions", 1, domain="d", case_id="c4\t", partition_date=DAY1)
        add_row(con, "decisions", 2, domain="other", case_id="c5 ", partition_date=DAY1)
        two = ingest_files(discover_landing_files(tmp_path, "cases", DAY2), CONTRACT, "case_id")
        known = cases_accepted_elsewhere(con, "d", two.accepted["case_id"], [DAY2])
        same_day = cases_accepted_elsewhere(con, "d", two.accepted["case_id"], [DAY1, DAY2])
        stored = query_frame(con, "SELECT case_id FROM accepted_cases ORDER BY row_number")
    assert known.rows() == [
        ("c1", DAY1, "c1 "),
        ("c2", DAY1, "\uff43\uff12"),
        ("c3", DAY1, "\u00a0c3"),
        ("c4", DAY1, "c4\t"),
    ]  # fmt: skip  (c5 is another domain's)
    assert same_day.is_empty(), "a re-run of the day holding them sees nothing elsewhere"
    assert stored["case_id"].to_list() == ["c1 ", "\uff43\uff12", "\u00a0c3"], "history kept"
    result = withhold_known_cases(two, known, "case_id")
    assert result.accepted["case_id"].to_list() == ["c5"]
    messages = result.quarantine.filter(pl.col("check") == CROSS_PARTITION_CHECK)["message"]
    assert messages[0] == (
        "column 'case_id' row 1: 'c1' was already accepted in partition 2018-01-03 "
        "(stored there as 'c1 ', the same id once canonical)"
    )
    assert "stored there as 'c4\\t'" in messages[3]  # shown escaped


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_contract_version_names_one_digest(tmp_path: Path) -> None:
    digest = contract_digest(CONTRACT)
    changed = CONTRACT.model_copy(update={"max_future_skew_hours": 1.0})
    bumped = changed.model_copy(update={"version": 2})
    with audit_connection(tmp_path / "audit.duckdb") as con:
        assert record_contract(con, "d", CONTRACT, digest, "r1", NOW)
        assert not record_contract(con, "d", CONTRACT, digest, "r2", NOW)
        with pytest.raises(ContractVersionConflict, match="needs a new version"):
            record_contract(con, "d", changed, contract_digest(changed), "r3", NOW)
        assert record_contract(con, "d", bumped, contract_digest(bumped), "r4", NOW)
        stored = query_frame(con, "SELECT contract_version, run_id FROM schema_versions ORDER BY 1")
    assert stored.rows() == [(1, "r1"), (2, "r4")]


@pytest.mark.usefixtures("fresh_audit_db")
def test_files_balance_fails_when_a_listed_file_is_not_accounted_for(tmp_path: Path) -> None:
    """The check can fail: a listing of three entries against two accounted files."""
    from hitl_gate.ingest.landing_registry import files_balance, record_listings
    from hitl_gate.ingest.listing import DayListing, RefusedFile

    refused = RefusedFile(tmp_path / ".x.csv", DAY1, "hidden", "hidden")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        record_listings(
            con, "d", [DayListing(DAY1, 3, [], [refused])], {DAY1: str(tmp_path)}, "r", NOW
        )
        unbalanced = files_balance(con, "d", [DAY1, DAY2]).rows()
        record_listings(
            con, "d", [DayListing(DAY1, 1, [], [refused])], {DAY1: str(tmp_path)}, "r", NOW
        )
        balanced = files_balance(con, "d", [DAY1]).rows()
    assert unbalanced == [(DAY1, 3, 0, 1, False), (DAY2, None, 0, 0, False)]
    assert balanced == [(DAY1, 1, 0, 1, True)]

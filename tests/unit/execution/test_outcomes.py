"""Outcome files recorded in slices: the same rows as the whole file, nothing lost, once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.execution import outcomes
from hitl_gate.execution.outcomes import (
    ExecutedCases,
    FileCheck,
    ingest_outcomes,
    insert_slices,
    open_outcome_file,
    outcome_slices,
)
from hitl_gate.ingest.csv_slices import CsvInSlices, csv_slices

FILE_DAY = date(2018, 4, 2)
COLUMNS = "case_id, outcome, observed_on, source_file, source_row, linked, run_id"


@pytest.fixture
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _folder(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "outcomes"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    stamp = datetime(2018, 4, 2, 12, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))
    return folder


def _db(tmp_path: Path, name: str, domain: DomainConfig, executed: list[str]) -> Path:
    db = tmp_path / name
    with audit_connection(db) as con:
        for case in executed:
            con.execute(
                "INSERT INTO executions VALUES (?, ?, '2018-03-05', 'approve', 'policy', NULL, "
                "'auto_approve', 'p', 'm', ['R'], 'run', now())",
                [domain.name, case],
            )
    return db


def _rows(db: Path) -> list[tuple]:
    with audit_connection(db, read_only=True) as con:
        return con.execute(f"SELECT {COLUMNS} FROM outcomes ORDER BY source_row").fetchall()


# Dates: the first one Polars reads sets the format (`03/01/2018` day first); `garbage` and
# the ISO date after it do not fit it, so they fall back to the file's date.
MIXED = (
    "application_id,loan_status,observed_on\n"
    "a1,Fully Paid,garbage\n"
    "a2,Charged Off,\n"
    "a3,Fully Paid,03/01/2018\n"
    "a4,Current,2018-01-05\n"
    "a5,Fully Paid,04/02/2018\n"
    "a6,Charged Off,\n"
    "a7,Current,05/03/2018\n"
)


def test_outcome_rows_dated_linked_and_numbered(tmp_path: Path, domain: DomainConfig) -> None:
    """The whole-file semantics: `observed_on` read with the file's format (else the file's
    date), `linked` when the case was executed, rows numbered from 1 after the header."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    db = _db(tmp_path, "a.duckdb", domain, ["a1", "a4", "a7"])
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-1") == (7, [])
    f = str(folder / "o.csv")
    assert _rows(db) == [
        ("a1", "Fully Paid", FILE_DAY, f, 1, True, "run-1"),
        ("a2", "Charged Off", FILE_DAY, f, 2, False, "run-1"),
        ("a3", "Fully Paid", date(2018, 1, 3), f, 3, False, "run-1"),
        ("a4", "Current", FILE_DAY, f, 4, True, "run-1"),
        ("a5", "Fully Paid", date(2018, 2, 4), f, 5, False, "run-1"),
        ("a6", "Charged Off", FILE_DAY, f, 6, False, "run-1"),
        ("a7", "Current", date(2018, 3, 5), f, 7, True, "run-1"),
    ]


UNDATED = "".join(line.rsplit(",", 1)[0] + "\n" for line in MIXED.splitlines())


@pytest.mark.parametrize("text", [MIXED, UNDATED], ids=["dated", "undated"])
@pytest.mark.parametrize("slice_rows", [2, 3])
def test_slices_of_a_few_rows_equal_the_whole_file(
    tmp_path: Path, domain: DomainConfig, text: str, slice_rows: int
) -> None:
    """Cut into slices of 2-3 rows (the format-setting date in the second slice), the file
    gives the rows of one slice."""
    folder = _folder(tmp_path, "o.csv", text)
    whole = _db(tmp_path, "whole.duckdb", domain, ["a1", "a4", "a7"])
    sliced = _db(tmp_path, "sliced.duckdb", domain, ["a1", "a4", "a7"])
    with audit_connection(whole) as con:
        ingest_outcomes(con, domain, folder, "run-1", slice_rows=1000)
    with audit_connection(sliced) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=slice_rows) == (7, [])
    assert _rows(sliced) == _rows(whole)
    assert {r[5] for r in _rows(whole)} == {True, False}


def test_slice_size_is_honoured(tmp_path: Path, domain: DomainConfig) -> None:
    folder = _folder(tmp_path, "o.csv", MIXED)
    file = open_outcome_file(folder / "o.csv", domain)
    heights = [f.height for f in outcome_slices(file, 3, "03/01/2018")]
    assert heights == [3, 3, 1]


def test_a_partly_recorded_file_is_completed_without_duplicates(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """A run killed after the first slice of a file: the next run records the rest, and the
    table is that of one whole run."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    once = _db(tmp_path, "once.duckdb", domain, ["a1", "a4"])
    twice = _db(tmp_path, "twice.duckdb", domain, ["a1", "a4"])
    with audit_connection(once) as con:
        ingest_outcomes(con, domain, folder, "run-1", slice_rows=3)
    file = open_outcome_file(folder / "o.csv", domain)
    with audit_connection(twice) as con:
        first = islice(outcome_slices(file, 3, "03/01/2018"), 1)
        executed = ExecutedCases(con, domain.name)
        at = datetime.now(UTC)
        assert insert_slices(executed, file, first, "run-1", at, FileCheck()) == 3
        executed.drop()
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=3) == (4, [])
    assert _rows(twice) == _rows(once)
    assert len(_rows(twice)) == 7


def test_a_fully_recorded_file_is_read_not_inserted(tmp_path: Path, domain: DomainConfig) -> None:
    """Once all its rows are there, a file's next run inserts nothing: it runs on a read-only
    connection, where any INSERT (even of no new row) fails."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    db = _db(tmp_path, "a.duckdb", domain, ["a1"])
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=2)[0] == 7
    with audit_connection(db, read_only=True) as con:
        assert ingest_outcomes(con, domain, folder, "run-2", slice_rows=2) == (0, [])
    with audit_connection(db) as con:
        con.execute("DELETE FROM outcomes WHERE case_id = 'a7'")
    with audit_connection(db, read_only=True) as con, pytest.raises(Exception, match="read"):
        ingest_outcomes(con, domain, folder, "run-3", slice_rows=2)  # one missing: inserted


def test_rows_without_case_id_or_outcome_are_reported(tmp_path: Path, domain: DomainConfig) -> None:
    """Nothing vanishes: such rows are named (file, rows, column), and rows read = recorded +
    rejected; blank lines (and lines of separators only) are not rows."""
    text = (
        "application_id,loan_status\n"
        "a1,Fully Paid\n"
        ",Charged Off\n"
        "a3,\n"
        "\n"
        ",\n" + "".join(f",x{i}\n" for i in range(6)) + "a9,Current\n"
    )
    folder = _folder(tmp_path, "o.csv", text)
    db = _db(tmp_path, "a.duckdb", domain, [])
    with audit_connection(db) as con:
        added, errors = ingest_outcomes(con, domain, folder, "run-1", slice_rows=2)
    assert added == 2
    assert [r[4] for r in _rows(db)] == [1, 12]  # rows 4 and 5 blank (no value): no rows
    assert errors == [
        f"{folder / 'o.csv'}: 8 row(s) rejected, not recorded (2 recorded): "
        "column 'application_id' empty in 7 row(s) (rows 2, 6, 7, 8, 9, ...); "
        "column 'loan_status' empty in 1 row(s) (rows 3)"
    ]


def test_a_file_that_cannot_be_read_records_nothing(tmp_path: Path, domain: DomainConfig) -> None:
    folder = _folder(tmp_path, "o.csv", "application_id,other\na1,x\n")
    db = _db(tmp_path, "a.duckdb", domain, [])
    with audit_connection(db) as con:
        added, errors = ingest_outcomes(con, domain, folder, "run-1", slice_rows=2)
    assert (added, _rows(db)) == (0, [])
    assert errors == [f"{folder / 'o.csv'}: missing column(s) ['loan_status']"]


def test_the_memory_limit_is_applied(tmp_path: Path, domain: DomainConfig) -> None:
    """The seal's limit reaches the ingest (a malformed one is refused before any read)."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    db = _db(tmp_path, "a.duckdb", domain, [])
    with audit_connection(db) as con, pytest.raises(ValueError, match="memory size"):
        ingest_outcomes(con, domain, folder, "run-1", memory_limit="lots")
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", memory_limit="1GB")[0] == 7
    assert pl.DataFrame(_rows(db), orient="row").height == 7


@pytest.mark.parametrize(
    ("text", "slice_rows", "reads"),
    [(MIXED, 1000, 1), (UNDATED, 1000, 1), (MIXED, 3, 2), (UNDATED, 3, 2)],
    ids=["dated-one-slice", "undated-one-slice", "dated-slices", "undated-slices"],
)
def test_a_file_is_parsed_once_when_one_slice_twice_otherwise(
    tmp_path: Path,
    domain: DomainConfig,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    slice_rows: int,
    reads: int,
) -> None:
    """The first date is found by the check's read (not a read of its own), and a file of one
    slice is inserted from the slice the check kept: one parse. The rows are those of the
    whole-file semantics either way."""
    folder = _folder(tmp_path, "o.csv", text)
    db = _db(tmp_path, "a.duckdb", domain, ["a1", "a4", "a7"])
    calls: list[int] = []

    def counted(source: CsvInSlices, native: bool, rows: int) -> Iterator[pl.DataFrame]:
        calls.append(rows)
        return csv_slices(source, native, rows)

    monkeypatch.setattr(outcomes, "csv_slices", counted)
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=slice_rows) == (7, [])
    assert len(calls) == reads
    monkeypatch.undo()
    whole = _db(tmp_path, "whole.duckdb", domain, ["a1", "a4", "a7"])
    with audit_connection(whole) as con:
        ingest_outcomes(con, domain, folder, "run-1", slice_rows=1000)
    assert _rows(db) == _rows(whole)


@dataclass
class _Recording:
    """A real DuckDB connection that keeps the SQL of each `execute` (`sql` passes through)."""

    con: duckdb.DuckDBPyConnection
    seen: list[str] = field(default_factory=list)

    def execute(self, query: str, *args: Any) -> duckdb.DuckDBPyConnection:
        self.seen.append(query)
        return self.con.execute(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_executions_are_read_once_per_ingest_not_per_slice(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """Two files of 4 slices each: the domain's executed ids are copied once for the ingest
    (each slice joins the copy), the copy is dropped at its end, and a run with nothing to
    insert does not read them at all. `linked` is that of one slice."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    _folder(tmp_path, "p.csv", UNDATED.replace("\na", "\nb").replace("\nb1,", "\na1,"))
    db = _db(tmp_path, "a.duckdb", domain, ["a1", "a4", "a7"])
    whole = _db(tmp_path, "whole.duckdb", domain, ["a1", "a4", "a7"])
    with audit_connection(whole) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=1000)[0] == 14
    for run in ("run-1", "run-2"):
        with audit_connection(db) as con:
            recording = _Recording(con)
            ingest = ingest_outcomes(
                cast(duckdb.DuckDBPyConnection, recording), domain, folder, run, slice_rows=2
            )
            assert ingest == ((14, []) if run == "run-1" else (0, []))
            reads = [q for q in recording.seen if "executions" in q]
            assert len(reads) == (1 if run == "run-1" else 0)
            temporary = "SELECT count(*) FROM duckdb_tables() WHERE temporary"
            assert con.execute(temporary).fetchall() == [(0,)]
    assert _rows(db) == _rows(whole)
    assert sum(r[5] for r in _rows(db)) == 4  # a1 (in both files), a4, a7


# Case ids repeated with other outcomes: a1 within slice 1 (row 3), a2 of slice 1 in slice 2
# (row 5), a3 of slice 2 in slice 3 (row 8); row 6 has no case id. Slices of 3 rows.
REPEATED = (
    "application_id,loan_status\n"
    "a1,Fully Paid\n"
    "a2,Charged Off\n"
    "a1,Charged Off\n"
    "a3,Current\n"
    "a2,Fully Paid\n"
    ",Current\n"
    "a4,Fully Paid\n"
    "a3,Charged Off\n"
)


@pytest.mark.parametrize("slice_rows", [3, 1000])
def test_a_repeated_case_id_is_reported_and_the_first_row_recorded(
    tmp_path: Path, domain: DomainConfig, slice_rows: int
) -> None:
    """An adversarial file: each case id's first row is recorded and every later row with it
    (another outcome, in the same slice or a later one) is rejected and named, as empty
    values are: rows read (8) = recorded (4) + rejected (4). Ingested again, the file adds
    nothing and says the same."""
    folder = _folder(tmp_path, "o.csv", REPEATED)
    db = _db(tmp_path, "a.duckdb", domain, ["a1"])
    message = (
        f"{folder / 'o.csv'}: 4 row(s) rejected, not recorded (4 recorded): "
        "column 'application_id' empty in 1 row(s) (rows 6); "
        "column 'application_id' repeats an earlier row's value in 3 row(s) "
        "(rows 3, 5, 8; the earlier row recorded)"
    )
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-1", slice_rows=slice_rows) == (
            4,
            [message],
        )
    recorded = [(r[0], r[1], r[4]) for r in _rows(db)]
    assert recorded == [
        ("a1", "Fully Paid", 1),
        ("a2", "Charged Off", 2),
        ("a3", "Current", 4),
        ("a4", "Fully Paid", 7),
    ]
    with audit_connection(db) as con:
        assert ingest_outcomes(con, domain, folder, "run-2", slice_rows=slice_rows) == (
            0,
            [message],
        )
    assert [(r[0], r[1], r[4]) for r in _rows(db)] == recorded


def test_repeats_are_counted_once_after_a_run_killed_mid_file(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The first slice recorded by a run that then stopped: the next run finds the repeats of
    the first slice's ids in the later slices, and not the first slice's own rows (recorded
    at the same row, not repeats)."""
    folder = _folder(tmp_path, "o.csv", REPEATED)
    db = _db(tmp_path, "a.duckdb", domain, [])
    file = open_outcome_file(folder / "o.csv", domain)
    with audit_connection(db) as con:
        executed = ExecutedCases(con, domain.name)
        first = islice(outcome_slices(file, 3, None), 1)
        assert insert_slices(executed, file, first, "run-1", datetime.now(UTC), FileCheck()) == 2
        executed.drop()
        added, errors = ingest_outcomes(con, domain, folder, "run-2", slice_rows=3)
    assert added == 2
    assert errors == [
        f"{folder / 'o.csv'}: 4 row(s) rejected, not recorded (4 recorded): "
        "column 'application_id' empty in 1 row(s) (rows 6); "
        "column 'application_id' repeats an earlier row's value in 3 row(s) "
        "(rows 3, 5, 8; the earlier row recorded)"
    ]
    assert [r[4] for r in _rows(db)] == [1, 2, 4, 7]


def test_a_new_file_is_inserted_without_or_ignore_and_a_resumed_one_falls_back(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """A slice of a new file stores only new keys: a plain INSERT (OR IGNORE costs 1.6x its
    CPU). A slice a killed run recorded in part fails that INSERT whole (nothing changes) and
    `OR IGNORE` records the rest; a slice repeating an earlier slice's case id goes straight
    to `OR IGNORE`. Either way the table is that of one whole run."""
    folder = _folder(tmp_path, "o.csv", MIXED)
    whole = _db(tmp_path, "whole.duckdb", domain, ["a1"])
    with audit_connection(whole) as con:
        recording = _Recording(con)
        ingest_outcomes(
            cast(duckdb.DuckDBPyConnection, recording), domain, folder, "r", slice_rows=3
        )
    inserts = [q.split("BY NAME")[0] for q in recording.seen if "INTO outcomes" in q]
    assert inserts == ["INSERT INTO outcomes "] * 3

    resumed = _db(tmp_path, "resumed.duckdb", domain, ["a1"])
    file = open_outcome_file(folder / "o.csv", domain)
    with audit_connection(resumed) as con:
        executed = ExecutedCases(con, domain.name)
        first = islice(outcome_slices(file, 2, "03/01/2018"), 1)  # rows 1-2 of slice 1 (1-3)
        assert insert_slices(executed, file, first, "r", datetime.now(UTC), FileCheck()) == 2
        executed.drop()
        recording = _Recording(con)
        ingest = ingest_outcomes(
            cast(duckdb.DuckDBPyConnection, recording), domain, folder, "r", slice_rows=3
        )
    assert ingest == (5, [])
    inserts = [q.split("BY NAME")[0] for q in recording.seen if "INTO outcomes" in q]
    assert inserts[:2] == ["INSERT INTO outcomes ", "INSERT OR IGNORE INTO outcomes "]
    assert inserts[2:] == ["INSERT INTO outcomes "] * 2
    assert _rows(resumed) == _rows(whole)

    (tmp_path / "rep").mkdir()
    repeated = _folder(tmp_path / "rep", "o.csv", REPEATED)
    db = _db(tmp_path, "rep.duckdb", domain, [])
    with audit_connection(db) as con:
        recording = _Recording(con)
        ingest_outcomes(
            cast(duckdb.DuckDBPyConnection, recording), domain, repeated, "r", slice_rows=3
        )
    inserts = [q.split("BY NAME")[0] for q in recording.seen if "INTO outcomes" in q]
    assert inserts == ["INSERT INTO outcomes "] + ["INSERT OR IGNORE INTO outcomes "] * 2

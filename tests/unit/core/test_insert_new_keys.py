"""`insert_new_keys` (a plain insert first, `OR IGNORE` only when a stored key fails it) and
`insert_new_rows`, its form for a Polars frame inside a transaction."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from hitl_gate.core.database import insert_new_keys, insert_new_rows, registered, transaction

_ROWS = "SELECT * FROM (VALUES {}) AS t(case_id, action)"


def _table() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE executions (case_id VARCHAR PRIMARY KEY, action VARCHAR)")
    return con


def _rows(*pairs: tuple[str, str]) -> str:
    return _ROWS.format(", ".join(f"('{case}', '{action}')" for case, action in pairs))


def _stored(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute("SELECT case_id, action FROM executions ORDER BY case_id").fetchall()


def test_new_keys_are_inserted_by_the_plain_insert_and_counted() -> None:
    con = _table()
    assert insert_new_keys(con, "executions", _rows(("a", "approve"), ("b", "decline"))) == 2
    assert _stored(con) == [("a", "approve"), ("b", "decline")]


@pytest.mark.parametrize("plain_first", [True, False])
def test_a_stored_key_is_kept_as_it_was_and_only_the_new_rows_are_counted(
    plain_first: bool,
) -> None:
    con = _table()
    insert_new_keys(con, "executions", _rows(("a", "approve")))
    inserted = insert_new_keys(
        con, "executions", _rows(("a", "decline"), ("c", "approve")), plain_first=plain_first
    )
    assert inserted == 1
    assert _stored(con) == [("a", "approve"), ("c", "approve")]  # never executed twice


def test_a_key_twice_in_one_statement_is_recorded_once() -> None:
    con = _table()
    assert insert_new_keys(con, "executions", _rows(("a", "approve"), ("a", "decline"))) == 1
    assert [case for case, _ in _stored(con)] == ["a"]


def test_parameters_reach_the_statement() -> None:
    con = _table()
    select = "SELECT $case AS case_id, $action AS action"
    assert insert_new_keys(con, "executions", select, {"case": "z", "action": "approve"}) == 1
    assert _stored(con) == [("z", "approve")]


def test_a_table_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="not a table name"):
        insert_new_keys(_table(), "executions; DROP TABLE executions", _rows(("a", "x")))


def test_a_frame_inside_a_transaction_counts_only_its_new_rows() -> None:
    """The transaction survives a stored key (no plain insert that would abort it)."""
    con = _table()
    insert_new_keys(con, "executions", _rows(("a", "approve")))
    frame = pl.DataFrame({"case_id": ["a", "b", "b"], "action": ["decline", "approve", "x"]})
    with transaction(con):
        assert insert_new_rows(con, "executions", frame) == 1
        assert insert_new_rows(con, "executions", frame.clear()) == 0
    assert _stored(con) == [("a", "approve"), ("b", "approve")]


def test_a_frame_for_a_table_name_that_is_not_an_identifier_is_refused() -> None:
    frame = pl.DataFrame({"case_id": ["a"], "action": ["x"]})
    with pytest.raises(ValueError, match="not a table name"):
        insert_new_rows(_table(), "executions; DROP TABLE executions", frame)


def test_a_key_violation_inside_a_transaction_is_the_error_the_caller_sees() -> None:
    """Not DuckDB's "transaction is aborted" from unregistering the frame's view afterwards."""
    con = _table()
    insert_new_keys(con, "executions", _rows(("a", "approve")))
    frame = pl.DataFrame({"case_id": ["a"], "action": ["decline"]})
    incoming = frame.to_arrow()
    with (
        pytest.raises(duckdb.ConstraintException),
        transaction(con),
        registered(con, "incoming", incoming),
    ):
        con.execute("INSERT INTO executions BY NAME SELECT * FROM incoming")
    assert _stored(con) == [("a", "approve")]
    with registered(con, "incoming", frame.with_columns(case_id=pl.lit("b")).to_arrow()):
        con.execute("INSERT INTO executions BY NAME SELECT * FROM incoming")  # name reusable
    assert _stored(con) == [("a", "approve"), ("b", "decline")]

"""A writing connection leaves the schema as running every statement would: it skips the
statements only when they would change nothing (`database.ensure_schema`)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from hitl_gate.core.database import CATALOG_SQL, audit_connection, schema_statements


def _catalog(con: duckdb.DuckDBPyConnection) -> set[tuple]:
    return set(con.execute(CATALOG_SQL).fetchall())


@pytest.fixture
def fresh() -> set[tuple]:
    """The catalog of a database the schema just ran on."""
    with duckdb.connect() as con:
        con.execute(schema_statements())
        return _catalog(con)


def _reopened(db: Path) -> set[tuple]:
    with audit_connection(db):
        pass
    with duckdb.connect(str(db), read_only=True) as con:
        return _catalog(con)


@pytest.mark.parametrize(
    "damage",
    [
        "DROP VIEW case_status_summary",
        "CREATE OR REPLACE VIEW case_status_summary AS SELECT 1 AS status",  # an edited view
        "DROP INDEX decisions_case_id",
        "ALTER TABLE audit_checkpoints DROP COLUMN merkle_fanout",  # a home older than it
        "DROP TABLE automation_halts",
    ],
)
def test_a_missing_or_changed_object_is_made_again_by_the_next_writer(
    tmp_path: Path, fresh: set[tuple], damage: str
) -> None:
    db = tmp_path / "audit.duckdb"
    assert _reopened(db) == fresh
    with duckdb.connect(str(db)) as con:
        con.execute(damage)
        assert _catalog(con) != fresh
    assert _reopened(db) == fresh


def test_objects_of_the_database_own_stay_and_the_schema_is_complete(
    tmp_path: Path, fresh: set[tuple]
) -> None:
    db = tmp_path / "audit.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE notes (text VARCHAR)")
    assert _reopened(db) == fresh | {("column", "notes", "text")}
    other = tmp_path / "other.duckdb"  # a second database in the same process
    assert _reopened(other) == fresh
    with duckdb.connect(str(other)) as con:
        con.execute("DROP VIEW case_status_summary")
    assert _reopened(other) == fresh


def test_the_schema_text_is_read_again_once_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`schema_statements` keeps the text while the files stay as they are, and reads an
    edited or added file again (the files' order is their names')."""
    from hitl_gate.core import database

    (tmp_path / "10_a.sql").write_text("CREATE TABLE a (x INT);", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not schema", encoding="utf-8")
    monkeypatch.setattr(database, "SCHEMA_DIR", tmp_path)
    assert schema_statements() == "CREATE TABLE a (x INT);"
    assert schema_statements() == "CREATE TABLE a (x INT);"
    (tmp_path / "10_a.sql").write_text("CREATE TABLE a (x BIGINT);", encoding="utf-8")
    assert schema_statements() == "CREATE TABLE a (x BIGINT);"
    (tmp_path / "05_b.sql").write_text("CREATE TABLE b (y INT);", encoding="utf-8")
    assert schema_statements() == "CREATE TABLE b (y INT);\nCREATE TABLE a (x BIGINT);"

"""A new audit database (every run's segment is one) is a copy of a schema-only database made
once per process (`core.database.create_audit_database`): the same catalogue as running the
schema, and never in place of a file, a write-ahead log or a link already there."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from hitl_gate.core.database import (
    CATALOG_SQL,
    audit_connection,
    create_audit_database,
    schema_statements,
)


def _catalog(con: duckdb.DuckDBPyConnection) -> set[tuple]:
    return set(con.execute(CATALOG_SQL).fetchall())


def test_a_new_database_holds_what_running_the_schema_makes_and_nothing_else(
    tmp_path: Path,
) -> None:
    database = tmp_path / "segments" / "a.2026-01-02.run-1.duckdb"  # its folder made too
    assert create_audit_database(database)
    with duckdb.connect() as fresh:
        fresh.execute(schema_statements())
        expected = _catalog(fresh)
    with duckdb.connect(str(database), read_only=True) as con:
        assert _catalog(con) == expected
        counts = con.execute(
            "SELECT sum(estimated_size) FROM duckdb_tables() WHERE database_name = "
            "current_database()"
        ).fetchall()
    assert counts == [(0,)]
    assert sorted(p.name for p in database.parent.iterdir()) == [database.name]  # no leftover


def test_nothing_already_there_is_replaced(tmp_path: Path) -> None:
    existing = tmp_path / "existing.duckdb"
    with duckdb.connect(str(existing)) as con:
        con.execute("CREATE TABLE mine AS SELECT 1 AS x")
    before = existing.read_bytes()
    assert not create_audit_database(existing)
    assert existing.read_bytes() == before
    logged = tmp_path / "logged.duckdb"  # a write-ahead log without its file: DuckDB's to replay
    Path(f"{logged}.wal").write_bytes(b"")
    assert not create_audit_database(logged) and not logged.exists()
    link = tmp_path / "link.duckdb"  # a link (even to nothing) is never written through
    link.symlink_to(tmp_path / "elsewhere.duckdb")
    assert not create_audit_database(link) and not (tmp_path / "elsewhere.duckdb").exists()


def test_concurrent_creators_make_one_whole_file(tmp_path: Path) -> None:
    database = tmp_path / "audit.duckdb"
    created: list[bool] = []
    threads = [
        threading.Thread(target=lambda: created.append(create_audit_database(database)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert created.count(True) == 1
    with audit_connection(database) as con:  # a writer opens it and finds the schema whole
        assert con.execute("SELECT count(*) FROM audit_log").fetchall() == [(0,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.duckdb"]

"""The replica's views file (`replica/audit.duckdb`) is, at every refresh, what running
`views.sql` in a new DuckDB file makes, however it was made: by creating every view, or by
copying the process's template and replacing only the table views (`replica_views`). A table
reshaped, a template altered or an auditor's edit of the views file: none shows through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from hitl_gate.audit import replica_views
from hitl_gate.audit.replica import refresh_replica
from hitl_gate.core.database import audit_connection
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.tamper_home import DOMAIN, add_row

CATALOG = (
    "SELECT table_name, column_name, data_type, column_index, is_nullable FROM duckdb_columns() "
    "WHERE NOT internal ORDER BY ALL",
    "SELECT view_name, sql, temporary, comment, tags FROM duckdb_views() WHERE NOT internal "
    "ORDER BY ALL",
    "SELECT table_name FROM duckdb_tables() ORDER BY ALL",
)


def home(folder: Path) -> Path:
    db = folder / "audit.duckdb"
    with audit_connection(blank_if_missing(db)) as con:
        add_row(con, "decisions", 1, domain=DOMAIN, case_id="C1", route="auto_approve")
    return db


def refresh(db: Path, change: str | None = None) -> None:
    with audit_connection(db) as con:
        if change:
            con.execute(change)
        refresh_replica(con, db.parent / "replica")


def catalog(path: Path) -> list[Any]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [con.execute(sql).fetchall() for sql in CATALOG] + [
            con.execute("SELECT count(*) FROM decisions").fetchall(),
            con.execute("SELECT count(*) FROM case_status_summary").fetchall(),
        ]


def as_views_sql_makes_it(replica: Path, scratch: Path) -> list[Any]:
    """The catalogue of a new DuckDB file made by running the replica's `views.sql` alone."""
    with duckdb.connect(str(scratch)) as con:
        con.execute((replica / "views.sql").read_text(encoding="utf-8"))
    return catalog(scratch)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many statements each views file's `run_script` ran (copy: the table views only)."""
    counted: list[int] = []
    run = replica_views.run_script

    def counting(con: duckdb.DuckDBPyConnection, script: str) -> None:
        counted.append(script.count(";\n"))
        run(con, script)

    monkeypatch.setattr(replica_views, "run_script", counting)
    monkeypatch.setattr(replica_views, "_TEMPLATE", {})
    return counted


def test_every_refresh_makes_the_file_views_sql_makes(
    tmp_path: Path, statements: list[int]
) -> None:
    first, second = home(tmp_path / "a"), home(tmp_path / "b")
    steps = [
        (first, None),  # creates every view; kept as the template
        (first, "INSERT INTO decisions SELECT * REPLACE ('C9' AS case_id) FROM decisions"),
        (second, None),  # another home, the same tables: copied too
        (first, "ALTER TABLE executions ADD COLUMN note VARCHAR"),  # copy refused, made anew
        (first, None),  # copied from the new template
    ]
    for n, (db, change) in enumerate(steps):
        refresh(db, change)
        replica = db.parent / "replica"
        assert catalog(replica / "audit.duckdb") == as_views_sql_makes_it(
            replica, tmp_path / f"fresh{n}.duckdb"
        )
    tables, every = min(statements), max(statements)
    assert every - tables == len(replica_views.schema_views())
    assert statements == [every, tables, tables, tables, every, tables]


def test_an_altered_template_is_not_copied(tmp_path: Path, statements: list[int]) -> None:
    db = home(tmp_path)
    refresh(db)
    (template,) = replica_views._TEMPLATE.values()
    with duckdb.connect(str(template.path)) as con:
        con.execute("CREATE OR REPLACE VIEW case_status_summary AS SELECT 1 AS n")
    refresh(db)
    replica = tmp_path / "replica"
    assert catalog(replica / "audit.duckdb") == as_views_sql_makes_it(replica, tmp_path / "f.db")
    assert statements[1:] == [statements[0] - len(replica_views.schema_views()), statements[0]]
    # the copy's views were refused, and every view created again


def test_an_auditors_edit_of_the_views_file_does_not_survive_a_refresh(
    tmp_path: Path, statements: list[int]
) -> None:
    db = home(tmp_path)
    refresh(db)
    replica = tmp_path / "replica"
    with duckdb.connect(str(replica / "audit.duckdb")) as con:  # a GUI client opens read-write
        con.execute("CREATE OR REPLACE VIEW case_status_summary AS SELECT 1 AS n")
        con.execute("CREATE TABLE notes AS SELECT 1 AS n")
    refresh(db)
    assert catalog(replica / "audit.duckdb") == as_views_sql_makes_it(replica, tmp_path / "f.db")
    assert statements[1] < statements[0]  # copied from the template, not from that file

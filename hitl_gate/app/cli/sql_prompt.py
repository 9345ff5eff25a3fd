"""`hitl audit sql`: an auditor's SQL prompt on the replica, never on the live audit file.

The replica's view file is opened read-only and its file access is narrowed to the replica
folder (`core.database.restrict_file_access`), so a session can read the sealed snapshot and
nothing else: no other file of the home, no writes, no extensions. No DuckDB CLI binary is
needed; any DuckDB client can instead `.read <home>/replica/views.sql`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from hitl_gate.audit.replica import current_manifest
from hitl_gate.audit.replica_views import VIEWS_DB
from hitl_gate.core.database import restrict_file_access

PROMPT, CONTINUED = "audit> ", "   ...> "
MAX_ROWS = 200
TABLES = "SELECT view_name AS name FROM duckdb_views() WHERE NOT internal ORDER BY 1"


@contextmanager
def open_replica(folder: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only session on the replica under `folder`; a one-line refusal when none yet."""
    manifest = current_manifest(folder)
    if manifest is None or not (folder / VIEWS_DB).exists():
        raise SystemExit(
            f"no audit replica at {folder} yet: it is written by every seal "
            "(a pipeline run, or `hitl audit seal`)"
        )
    con = duckdb.connect(str(folder / VIEWS_DB), read_only=True)
    try:
        restrict_file_access(con, [folder.resolve()])
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def run_statement(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Run one statement and print its rows; a refusal is one line on stderr (False)."""
    try:
        relation = con.sql(sql)
        if relation is not None:
            relation.show(max_rows=MAX_ROWS, max_width=200)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.stderr.write(f"{first}\n")
        return False
    return True


def prompt(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Read statements ending in `;` until `.quit` or end of input, printing each result."""
    manifest = current_manifest(folder) or {}
    print(
        f"audit replica, read-only: log head {manifest.get('head_seq')}, sealed state of "
        f"{manifest.get('refreshed_at')}. End statements with ';'; `.tables` lists the "
        "tables and views, `.quit` leaves."
    )
    buffer: list[str] = []
    while True:
        try:
            line = input(CONTINUED if buffer else PROMPT)
        except EOFError:
            print()
            return
        if not buffer and line.strip() in (".quit", ".exit", "\\q"):
            return
        if not buffer and line.strip() == ".tables":
            run_statement(con, TABLES)
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            run_statement(con, "\n".join(buffer))
            buffer = []

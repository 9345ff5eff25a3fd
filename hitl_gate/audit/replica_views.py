"""The replica's views: `views.sql` (any DuckDB client runs it) and the same views in a DuckDB
file (`audit.duckdb`, for GUI clients), both written by every refresh (`replica`).

Making the views file was most of a small home's refresh (about 100 of 170 ms of CPU): a DuckDB
instance built and closed for it, and every view bound as DuckDB creates it (each of the fifty
table views reads its first Parquet file's schema; each of the schema's fifteen views binds
through them, 3 ms apiece). Two cuts, the file left the same:

- It is attached to an instance the process keeps (`kept_instance`), whose file access is
  restricted to the replica folder (the connection it had before was not restricted at all).
- The schema's views are the same text at every refresh, and DuckDB binds them the same while
  the table views they read have the same names and columns. A process's first refresh creates
  every view and keeps a copy of the file in a private folder (`_Template`), with the names,
  columns and SQL of its views. A later refresh copies that file and replaces only the table
  views (each now reading the new snapshot), then reads the views back: when they are the
  template's table views and the columns and schema views' SQL are all the template's, the
  file is what creating every view would have made. Anything else (a table added, dropped or
  reshaped, another schema, an altered template) and the copy is dropped and every view
  created, as before; that file becomes the template.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from hitl_gate.core.database import attached_files, restrict_file_access, schema_statements
from hitl_gate.core.kept_instance import attached_connection
from hitl_gate.core.quiet_duckdb import quiet_connect

VIEWS_SQL = "views.sql"
VIEWS_DB = "audit.duckdb"
# Where the views file is written before it is renamed into place (a folder, so the file keeps
# the name DuckDB gives its catalogue, which a kept instance attaches it under).
BUILDING = ".building"


@cache
def schema_views() -> tuple[str, ...]:
    """The schema's view statements (`core/schema/*.sql`), in creation order.

    Taken from the project's own schema, never from the live file, so nothing a database
    writer adds runs in an auditor's session.
    """
    with quiet_connect() as scratch:
        scratch.execute(schema_statements())
        found = scratch.execute(
            "SELECT sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' "
            "ORDER BY view_oid"
        ).fetchall()
    return tuple(sql.rstrip().rstrip(";") + ";" for (sql,) in found)


def table_views(snapshot: Path, parts: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """By table: the statement making it a view over its parts (Parquet file names in
    `snapshot`, named by their full path: module docstring of `replica`)."""
    current = snapshot.resolve()
    views = {}
    for table in sorted(parts):
        paths = ", ".join(
            "'" + str(current / part).replace("'", "''") + "'" for part in parts[table]
        )
        views[table] = f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet([{paths}]);"
    return views


def views_script(snapshot: Path, tables: Mapping[str, str]) -> str:
    """SQL any DuckDB client can run (`.read views.sql`) to query `snapshot` (the newest): the
    table views `tables` (`table_views`), then the schema's views."""
    lines = [
        "-- hitl-gate audit replica: run in any DuckDB client (`.read` this file), then query.",
        f"-- Tables read the sealed snapshot {snapshot.resolve().name} (the newest when this was "
        "written).",
        *tables.values(),
        *schema_views(),
    ]
    return "\n".join(lines) + "\n"


# A views file's catalogue as `_catalog` reads it: (kind, name, column or SQL, type).
Catalog = frozenset[tuple[str, str, str, str]]


@dataclass(frozen=True)
class _Template:
    """A views file made by creating every view, kept by this process (its pid) to be copied:
    its table views' names, and every view's columns and each schema view's SQL (`_catalog`)."""

    pid: int
    path: Path
    tables: frozenset[str]
    catalog: Catalog


# By the schema's view statements: the template this process keeps (one at most).
_TEMPLATE: dict[tuple[str, ...], _Template] = {}


def write_views_db(folder: Path, tables: Mapping[str, str]) -> None:
    """`folder/audit.duckdb`: the table views `tables` (`table_views`) and the schema's views
    in a DuckDB file, written aside and renamed into place (module docstring)."""
    folder = folder.resolve()
    aside = folder / BUILDING / VIEWS_DB
    aside.parent.mkdir(exist_ok=True)
    schema = schema_views()
    template = _TEMPLATE.get(schema)
    made = False
    if (
        template is not None
        and template.pid == os.getpid()
        and template.tables == frozenset(tables)
        and template.path.is_file()
    ):
        _remove(aside)
        shutil.copyfile(template.path, aside)
        with _connection(folder, aside) as con:
            run_script(con, "\n".join(tables.values()) + "\n")
            made = _catalog(con, tables) == template.catalog
    if not made:
        _remove(aside)
        with _connection(folder, aside) as con:
            run_script(con, "\n".join([*tables.values(), *schema]) + "\n")
            catalog = _catalog(con, tables)
        _keep_template(schema, aside, frozenset(tables), catalog)
    aside.replace(folder / VIEWS_DB)


@contextmanager
def _connection(folder: Path, path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the views file `path` on a kept instance that may open nothing outside
    the replica `folder`; closing it checkpoints the file."""
    with attached_connection(
        path,
        False,
        ("replica views", str(folder)),
        lambda host: restrict_file_access(host, [folder]),
    ) as con:
        yield con


def _catalog(con: duckdb.DuckDBPyConnection, tables: Mapping[str, str]) -> Catalog:
    """Every view's and table's columns, and the SQL of each view but the table views `tables`
    (whose SQL names the snapshot)."""
    columns = con.execute(
        "SELECT 'column', table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database()"
    ).fetchall()
    views = con.execute(
        "SELECT 'view', view_name, sql, '' FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    return frozenset(
        (str(kind), str(name), str(a), str(b))
        for kind, name, a, b in [*columns, *views]
        if kind == "column" or name not in tables
    )


def _keep_template(
    schema: tuple[str, ...],
    made: Path,
    tables: frozenset[str],
    catalog: Catalog,
) -> None:
    """Copy the views file just `made` (closed) into this process's private folder as the
    template for `schema`, replacing any kept before."""
    old = _TEMPLATE.pop(schema, None)
    _TEMPLATE.clear()
    if old is not None and old.pid == os.getpid():
        folder = old.path.parent
    else:
        folder = Path(tempfile.mkdtemp(prefix="hitl-gate-replica-views-"))  # mode 0700
        atexit.register(_remove_folder, folder, os.getpid())
    path = folder / VIEWS_DB
    shutil.copyfile(made, path)
    _TEMPLATE[schema] = _Template(os.getpid(), path, tables, catalog)


def _remove(path: Path) -> None:
    """`path` and what DuckDB leaves beside it (a write-ahead log after a crash)."""
    for file in attached_files(path):
        file.unlink(missing_ok=True)


def _remove_folder(folder: Path, pid: int) -> None:
    if os.getpid() == pid:  # not a forked child exiting: the folder is its parent's
        shutil.rmtree(folder, ignore_errors=True)


def run_script(con: duckdb.DuckDBPyConnection, script: str) -> None:
    """Create the views of `script`, each once its inputs exist (schema views build on each
    other, and DuckDB binds a view when it is created).

    In one transaction when the script's order already has every input first (`views_script`
    writes the tables, then the schema's views in creation order): a commit per view was a
    quarter of the views database's cost. A view that fails to bind rolls that back, and the
    views are then created one by one, each retried once the others exist."""
    pending = [s for s in (part.strip() for part in script.split(";\n")) if s]
    pending = [s for s in pending if not all(ln.startswith("--") for ln in s.splitlines())]
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in pending:
            con.execute(statement)
    except duckdb.CatalogException:
        con.execute("ROLLBACK")
    else:
        con.execute("COMMIT")
        return
    while pending:
        failed = []
        for statement in pending:
            try:
                con.execute(statement)
            except duckdb.CatalogException:
                failed.append(statement)
        if len(failed) == len(pending):
            con.execute(failed[0])  # raises, naming what is missing
        pending = failed

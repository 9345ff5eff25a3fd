"""The audit and lineage database: one DuckDB file that auditors can query with any SQL client.

Writes follow two rules. Partition-scoped facts (input files, quarantine, decisions, batches)
are replaced slice by slice inside one transaction, so re-running a day is idempotent.
Irreversible facts (verdicts, executions, verdict files) are insert-once behind a primary key,
so nothing acted upon can be rewritten or applied twice.

Every audit connection runs with DuckDB's file access switched off (`enable_external_access`
false) except for the folders its caller names (`readable`: the warehouse's Parquet for the
pipeline): no SQL on it, whoever writes it, can `read_blob` a key file or the token's files,
`COPY` to or `ATTACH` another file, or load an extension. DuckDB refuses to switch access
back on while the database is open. A writer that copies rows into another DuckDB file (a
run's audit segment, `audit.run_seal`) names that file (`attachable`): the connection may then
open exactly that file and DuckDB's own files beside it (`attached_files`), no folder and no
other name. Maintenance that rewrites the file (retention's
compaction) opens its own unrestricted connection (`maintenance_connection`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from hitl_gate.core.kept_instance import attached_connection, can_attach
from hitl_gate.core.new_database import DUCKDB_SIDE_FILES, place_new_database
from hitl_gate.core.quiet_duckdb import quiet_connect

SCHEMA_DIR = resources.files("hitl_gate.core").joinpath("schema")


OpenConnection = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
"""Opens a short-lived audit connection (the Dagster resource's `connect`, which waits its turn
while another process holds the file): what the stages' library functions are given."""


def schema_statements() -> str:
    """Every schema file of `hitl_gate/core/schema/`, in name order (tables before views).

    Every writing connection asks for it (twice: `ensure_schema` and the schema-only copy), and
    reading the 25 files each time cost about 0.37 ms of CPU (0.14 ms to stat them); the text
    is kept per process while every file keeps its name, size and modification time (a file
    edited under a running process, a developer's UI, is read again)."""
    files = sorted(
        (f for f in SCHEMA_DIR.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
    paths = [f for f in files if isinstance(f, Path)]
    if len(paths) < len(files):  # a zipped install: no modification time to key on
        return "\n".join(f.read_text(encoding="utf-8") for f in files)
    stamp = tuple((p.name, s.st_size, s.st_mtime_ns) for p in paths for s in [p.stat()])
    text = _SCHEMA_TEXT.get(stamp)
    if text is None:
        text = "\n".join(p.read_text(encoding="utf-8") for p in paths)
        _SCHEMA_TEXT.clear()  # one schema per process, but never more than one kept
        _SCHEMA_TEXT[stamp] = text
    return text


# `schema_statements`' text, by the (name, size, modification time) of each schema file.
_SCHEMA_TEXT: dict[tuple[tuple[str, int, int], ...], str] = {}


# What a database holds once the schema ran, as far as the schema's statements can change it:
# table and view columns by name (CREATE TABLE / ALTER TABLE ADD COLUMN ... IF NOT EXISTS),
# view definitions (CREATE OR REPLACE VIEW) and index names (CREATE INDEX IF NOT EXISTS).
CATALOG_SQL = (
    "SELECT 'column', table_name, column_name FROM duckdb_columns() "
    "WHERE database_name = current_database() "
    "UNION ALL SELECT 'view', view_name, sql FROM duckdb_views() "
    "WHERE database_name = current_database() AND NOT internal "
    "UNION ALL SELECT 'index', index_name, table_name FROM duckdb_indexes() "
    "WHERE database_name = current_database()"
)
# By the schema's text: the catalog entries of a database right after the schema ran on it in
# this process. Another database holding all of them is one the schema would not change.
_SCHEMA_CATALOG: dict[str, frozenset[tuple[str, str, str]]] = {}


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Run the schema on `con` unless it would change nothing there.

    Running it costs about 0.1 s of CPU (parsing and binding every statement and view), paid
    by every writing connection; reading the catalog costs a tenth of that. The schema only
    creates missing tables, columns and indexes (`IF NOT EXISTS`) and sets view definitions,
    so a database already holding every table column, view definition and index name that a
    database has right after the schema ran is left as it is; any one missing or different
    (an older home, a dropped or edited view) and the schema runs, as before.
    """
    statements = schema_statements()
    expected = _SCHEMA_CATALOG.get(statements)
    if expected is not None and expected <= _catalog(con):
        return
    con.execute(statements)
    _SCHEMA_CATALOG.clear()  # one schema per process, but never more than one kept
    _SCHEMA_CATALOG[statements] = _catalog(con)


def _catalog(con: duckdb.DuckDBPyConnection) -> frozenset[tuple[str, str, str]]:
    """The catalog entries as DuckDB returns them (three texts a row: no conversion, which
    cost a tenth of the check on a demo home's 700 entries)."""
    rows: list[tuple[str, str, str]] = con.execute(CATALOG_SQL).fetchall()
    return frozenset(rows)


# By the schema's text: the schema-only database this process made (its pid, the file), which
# `create_audit_database` copies. One kept per process; a forked child makes its own.
_BLANK: dict[str, tuple[int, Path]] = {}


def create_audit_database(path: Path) -> bool:
    """Create `path` as an audit database holding the schema and nothing else, unless it or
    its write-ahead log exists; True when this call created it.

    A writer creating the file would run the whole schema on it (`ensure_schema`: about 0.1 s
    of CPU parsing and binding every statement and view), once per new database: every run's
    segment is one (`audit.run_segments`). Instead the first creation in a process makes a
    schema-only database in a private temporary folder, and each creation copies it: a byte
    copy of a database the schema just ran on is that database, and its first writer finds
    the catalogue complete and leaves it as it is. The copy is written aside and linked into
    place, so a file another process created meanwhile is never replaced (nor one half
    written ever seen); where the file system cannot link, nothing is created here and the
    writer creates the file as before.
    """
    path = Path(path)
    # Checked first as well, so an existing file never costs the blank's making.
    if any(os.path.lexists(f"{path}{suffix}") for suffix in ("", *DUCKDB_SIDE_FILES)):
        return False
    try:
        blank = _blank_database().read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, duckdb.Error):  # no room in the temporary folder: the writer creates it
        return False
    return place_new_database(path, blank, DUCKDB_SIDE_FILES)


def _blank_database() -> Path:
    """The schema-only database of this process (`create_audit_database`), made on first use."""
    statements = schema_statements()
    made = _BLANK.get(statements)
    if made is not None and made[0] == os.getpid() and made[1].is_file():
        return made[1]
    folder = Path(tempfile.mkdtemp(prefix="hitl-gate-blank-audit-"))  # mode 0700
    atexit.register(_remove_blank, folder, os.getpid())
    blank = folder / "audit.duckdb"
    con = quiet_connect(str(blank))
    try:
        restrict_file_access(con)
        ensure_schema(con)
    finally:
        con.close()  # checkpoints the schema into the file: no write-ahead log is left
    _BLANK.clear()
    _BLANK[statements] = (os.getpid(), blank)
    return blank


def _remove_blank(folder: Path, pid: int) -> None:
    if os.getpid() == pid:  # not a forked child exiting: the folder is its parent's
        shutil.rmtree(folder, ignore_errors=True)


def _table_name(table: str) -> str:
    """Accept only plain identifiers, since table names cannot be bound as parameters."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    return table


class OpenAttaching(Protocol):
    """Opens a short-lived audit writer that may also `ATTACH` the DuckDB files `attachable`
    (`AuditDatabase.connect`, `audit_connection` bound to a path): what a run's segment seal
    is given, so only its pick's connection gets the allowance."""

    def __call__(
        self, *, attachable: Sequence[Path] = ()
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


@contextmanager
def audit_connection(
    path: Path,
    read_only: bool = False,
    readable: Sequence[Path] = (),
    attachable: Sequence[Path] = (),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the audit database (creating schema on write access) and always close it.

    Connections are short-lived on purpose: DuckDB allows one writing process per file, and
    the Dagster UI, the sensor and the CLI must be able to take turns. File access is
    restricted to `readable` folders and the DuckDB files `attachable` (module docstring).
    The file is attached to a DuckDB instance the process keeps and detached on close
    (`kept_instance`), which checkpoints it and frees it for the next process as closing an
    instance did, at a quarter of the CPU.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_audit_database(path)
    with _opened(Path(path), read_only, readable, attachable) as con:
        if not read_only:
            ensure_schema(con)
        yield con


# Whether audit connections attach their file to an instance the process keeps
# (`kept_instance`) instead of opening an instance each (False: as before session 17). An
# implementation choice, not deployment configuration: both ways lock, checkpoint, restrict and
# replay alike (tests/unit/core/test_kept_instance.py runs those cases both ways), and a file
# that cannot be attached (`can_attach`) always takes the second.
KEEP_INSTANCES = True


@contextmanager
def _opened(
    path: Path, read_only: bool, readable: Sequence[Path], attachable: Sequence[Path]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A restricted connection to `path`: attached to a kept instance, or opened on its own
    where that cannot be (`kept_instance.can_attach`)."""
    if KEEP_INSTANCES and can_attach(path):
        allowed = (*attachable, path)
        key = (tuple(str(Path(p).resolve()) for p in readable), tuple(map(str, allowed)))
        with attached_connection(
            path, read_only, key, lambda host: restrict_file_access(host, readable, allowed)
        ) as con:
            yield con
        return
    con = quiet_connect(str(path), read_only=read_only)
    try:
        restrict_file_access(con, readable, attachable)
        yield con
    finally:
        con.close()


def restrict_file_access(
    con: duckdb.DuckDBPyConnection,
    readable: Sequence[Path] = (),
    attachable: Sequence[Path] = (),
) -> None:
    """Switch the connection's database instance to no file access but `readable` folders
    and the DuckDB databases `attachable` (`attached_files` of each, nothing else).

    The setting belongs to the instance, which DuckDB shares between connections of one
    process to the same file: when an earlier, still open connection restricted it already,
    it stays as that one set it (DuckDB cannot widen it), and a read outside fails with
    DuckDB's `PermissionException` naming the file.
    """
    restrict_to_directories(
        con,
        [str(Path(p).resolve()).rstrip("/") + "/" for p in readable],
        [str(f) for database in attachable for f in attached_files(database)],
    )


# What DuckDB opens beside a database it attaches for writing: the write-ahead log, the log
# it writes while checkpointing and the one it replays after a crash.
ATTACHED_SUFFIXES = ("", ".wal", ".wal.checkpoint", ".wal.recovery")


def attached_files(database: Path) -> tuple[Path, ...]:
    """The files a session needs to `ATTACH` `database`, as DuckDB will name them.

    Absolute, with the folder's symbolic links resolved, so the allowance and the `ATTACH`
    (`attach_database`) name the same text. A file among them that is itself a symbolic link
    is refused (`ValueError`): whoever planted it could point the allowance at a key.
    """
    folder = Path(database).parent.resolve()
    files = tuple(folder / f"{Path(database).name}{suffix}" for suffix in ATTACHED_SUFFIXES)
    for file in files:
        if file.is_symlink():
            raise ValueError(f"{file} is a symbolic link: not attached")
    return files


def attach_database(
    con: duckdb.DuckDBPyConnection, database: Path, alias: str, *, read_only: bool = False
) -> None:
    """`ATTACH` `database` as `alias` (an identifier), on a connection opened with it among
    its `attachable` files; a connection without that allowance is refused with DuckDB's
    `PermissionException` naming the file. `read_only`: the session can read the attached
    database but never write it (a reader of sealed segments: the fold, verify), and a file
    that does not exist is not created."""
    if not alias.isidentifier():
        raise ValueError(f"not an alias: {alias!r}")
    mode = " (READ_ONLY)" if read_only else ""
    con.execute(f"ATTACH ? AS {alias}{mode}", [str(attached_files(database)[0])])


def restrict_to_directories(
    con: Any, directories: Sequence[str], files: Sequence[str] = ()
) -> None:
    """`restrict_file_access` with DuckDB's own `allowed_directories` entries.

    An entry is a prefix DuckDB compares with the path as the SQL names it, after removing
    `..`: absolute folders, or relative ones (`<domain>/`) for sessions whose views name
    files relative to their `file_search_path`; `files` are single files (`allowed_paths`,
    compared the same way). `con` is a DuckDB connection or a driver's
    wrapper of one (SQLAlchemy's), hence untyped.
    """
    (enabled,) = con.execute("SELECT current_setting('enable_external_access')").fetchall()[0]
    if not enabled:
        return
    if directories:
        con.execute("SET allowed_directories = ?", [list(directories)])
    if files:
        con.execute("SET allowed_paths = ?", [list(files)])
    con.execute("SET enable_external_access = false")


@contextmanager
def maintenance_connection(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An unrestricted writable connection, for maintenance that rewrites database files.

    Only retention's compaction uses it (`hitl_gate.audit.retention`), from the command line,
    never a pipeline step.
    """
    con = quiet_connect(str(path))
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block as one DuckDB transaction: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_partition_slice(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    domain: str,
    days: Sequence[date],
) -> int:
    """Replace the rows of `domain` for `days` in `table` by `frame`, atomically."""
    name = _table_name(table)
    with transaction(con):
        con.execute(
            f"DELETE FROM {name} WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain, list(days)],
        )
        if frame.height:
            con.register("incoming_slice", frame.to_arrow())
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming_slice")
            con.unregister("incoming_slice")
    return frame.height


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, data: Any) -> Iterator[str]:
    """`data` (an Arrow table or reader, a DataFrame) visible to SQL as `name` inside the block,
    and gone after it even when a statement fails, so the next user of the name never reads
    a stale view.

    When the block fails inside a transaction DuckDB has aborted, the unregister fails too
    ("Current transaction is aborted"); the block's own error (e.g. the key's
    `ConstraintException`) is what the caller must see, so that second error is dropped. A
    name left registered is replaced by the next `register` of it.
    """
    con.register(name, data)
    try:
        yield name
    except BaseException:
        with suppress(duckdb.Error):
            con.unregister(name)
        raise
    con.unregister(name)


def insert_new_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Insert the frame's rows whose primary key is not yet present; return how many were new.

    `insert_new_keys` with `OR IGNORE` straight away: callers may hold an explicit
    transaction, where a failed plain insert would abort it. The count is the insert's own,
    so rows another writer added meanwhile are not counted as this frame's.
    """
    _table_name(table)
    if frame.height == 0:
        return 0
    with registered(con, "incoming_rows", frame.to_arrow()):
        return insert_new_keys(con, table, "SELECT * FROM incoming_rows", plain_first=False)


def insert_new_keys(
    con: duckdb.DuckDBPyConnection,
    table: str,
    select_sql: str,
    params: dict[str, object] | Sequence[object] | None = None,
    *,
    plain_first: bool = True,
) -> int:
    """Insert the rows of `select_sql` whose primary key `table` lacks; return how many.

    A plain `INSERT` first when `plain_first` (the caller expects only new keys): DuckDB's
    `OR IGNORE` path costs about 1.6x the CPU of a plain insert (a million rows: 3.3 s
    against 2.0 s). A key stored anyway fails the whole statement, which changes nothing,
    and `OR IGNORE` then skips exactly those rows. Auto-commit only: inside an explicit
    transaction DuckDB aborts the whole transaction on the failed statement, so the fallback
    could not run.
    """
    name = _table_name(table)
    if plain_first:
        try:
            return _row_count(con.execute(f"INSERT INTO {name} BY NAME {select_sql}", params))
        except duckdb.ConstraintException:
            pass
    return _row_count(con.execute(f"INSERT OR IGNORE INTO {name} BY NAME {select_sql}", params))


def _row_count(result: duckdb.DuckDBPyConnection) -> int:
    """The row count an `INSERT` returns."""
    rows = result.fetchall()
    return int(rows[0][0]) if rows else 0


def query_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> pl.DataFrame:
    """Run a parameterised query and return a Polars frame."""
    frame: pl.DataFrame = con.sql(sql, params=list(params)).pl()
    return frame


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> Any:
    """Run a query returning one value; fetches fully, as DuckDB 2 requires before new work.

    Typed `Any`: the value's type is the query's (a count, a text, a timestamp), which only
    the caller knows.
    """
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None

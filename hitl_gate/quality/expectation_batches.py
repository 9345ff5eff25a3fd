"""The DuckDB file Great Expectations validates: views over the warehouse's Parquet, in place.

Asset outputs live as Parquet under the warehouse folder (`<domain>/<stage>/<day>.parquet`,
pipelines/io_managers.py). `expectations.duckdb` in that folder holds, per stage, a view reading
those files where they are (no copy), a view of the days being checked, and a table of each
checked day's row count against its trailing days. Paths inside the views are relative and
resolved through DuckDB's `file_search_path`, so the home folder can move. DuckDB cannot bind
parameters in DDL ("Unexpected prepared parameter"), so view text holds only identifiers built
from validated names and file names built from dates; every value (days, window length) is bound.

The view of the checked days reads those days' own files, not every day's: the IO manager writes
each day's rows, and only them, to the day's file, and GE's ~10 queries of a check each opened
all of a stage's files (90 in the demo home; a year of history is 365) to keep a few rows. Where
those files do not have the columns and types of all the stage's files together (a column added
or widened since), the view reads every file, as `union_by_name` then gives the checked rows the
stage's whole schema; the row counts against the trailing days read the window's files.

The stage's view over every file is bound again (each file's footer read, 90 in the demo home)
only when the stage's folder changed: `stage_listings` keeps, per view, a digest of the folder's
entries (names, sizes, modification times) and of the DuckDB version it was bound with. While
the digest holds, the view's catalogue columns are those of the same files.

Every session on the file (this module's and Great Expectations' engine, `gx_dialect`) may read
only the warehouse (`readable_directories`): a view planted in the file by whoever can write
it cannot `read_blob` the home's secrets into a validation result or a Data Docs page. A check
prepares the views on the connection GE then validates with (`prepare_stage(connection=...)`),
so the file is opened once per check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.core.database import restrict_to_directories
from hitl_gate.core.quiet_duckdb import quiet_connect

DATABASE_NAME = "expectations.duckdb"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS checked_days (view_name VARCHAR, partition_date DATE);
CREATE TABLE IF NOT EXISTS trailing_row_counts (
    view_name VARCHAR, partition_date DATE, row_count BIGINT, trailing_days INTEGER,
    trailing_median DOUBLE, ratio_to_trailing_median DOUBLE
);
CREATE TABLE IF NOT EXISTS stage_listings (view_name VARCHAR PRIMARY KEY, listing VARCHAR);
"""


@dataclass(frozen=True)
class StageViews:
    """Table names (in the DuckDB file) GE validates for one stage of one domain."""

    checked: str  # the stage's rows on the checked days
    row_counts: str  # one row per checked day: its row count vs the trailing median


def database_path(warehouse: Path) -> Path:
    return warehouse / DATABASE_NAME


def connect_config(warehouse: Path) -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB settings every connection to the file needs (the same for all, as DuckDB asks)."""
    return {"file_search_path": str(warehouse)}


def engine_kwargs(warehouse: Path) -> dict[str, Any]:
    """SQLAlchemy engine arguments for Great Expectations' connections to the file (through
    `gx_dialect`, which applies `allowed_directories`)."""
    return {
        "connect_args": {
            "config": connect_config(warehouse),
            "allowed_directories": readable_directories(warehouse),
        }
    }


def readable_directories(warehouse: Path) -> list[str]:
    """What a session on the file may read: the warehouse, by its absolute path and by the
    relative `<domain>/` prefixes the views use (DuckDB checks the path as written)."""
    root = warehouse.resolve()
    domains = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return [f"{root}/", *(f"{name}/" for name in domains)]


def _day_files(warehouse: Path, domain: str, stage: str, days: Sequence[date]) -> str | None:
    """The stored files of `days` as a DuckDB list literal (relative paths), or None if none is.

    Names are built from validated identifiers and ISO dates only (see the module docstring)."""
    names = [f"{domain}/{stage}/{day.isoformat()}.parquet" for day in sorted(set(days))]
    stored = [name for name in names if (warehouse / name).is_file()]
    return "[" + ", ".join(f"'{name}'" for name in stored) + "]" if stored else None


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, str]]:
    """Names and types of `source`'s columns, in order."""
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]


def _view_columns(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    """Names and types of `view`'s columns, in order, as DuckDB bound them when the view was
    (re)made: read from the catalogue (types written as `DESCRIBE` writes them), where a
    `DESCRIBE` of the view would bind it again and so re-read the footer of every file a
    stage's view reads (90 in the demo home, 20 ms of a check's CPU)."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = current_schema() AND table_name = ? "
        "ORDER BY column_index",
        [view],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _checked_source(
    con: duckdb.DuckDBPyConnection, warehouse: Path, domain: str, stage: str, days: Sequence[date]
) -> str:
    """What the checked days' view reads: their own files when these have the stage's whole
    schema (the usual case), else every file through the stage's view (just made on `con`)."""
    base = _identifier(domain, stage)
    files = _day_files(warehouse, domain, stage, days)
    if files is None:
        return base
    own = f"read_parquet({files}, union_by_name = true)"
    return own if _columns(con, own) == _view_columns(con, base) else base


def _window_days(days: Sequence[date], trailing_days: int) -> list[date]:
    """Every day whose row count the trailing medians of `days` can use, and `days` themselves."""
    first, last = min(days), max(days)
    return [first - timedelta(days=n) for n in range(trailing_days, -(last - first).days - 1, -1)]


def _identifier(*parts: str) -> str:
    """A view name from domain and stage names, refused unless it is a plain identifier."""
    name = "__".join(parts)
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def _listing(folder: Path) -> str:
    """A digest of `folder`'s entries (name, size, modification time) and of DuckDB's version:
    what the stage's view over every file was bound from."""
    entries = sorted(
        f"{e.name}\0{e.stat().st_size}\0{e.stat().st_mtime_ns}" for e in os.scandir(folder)
    )
    text = "\n".join([duckdb.__version__, *entries])
    return hashlib.sha256(text.encode()).hexdigest()


def _define_stage_view(con: duckdb.DuckDBPyConnection, base: str, folder: Path, files: str) -> None:
    """(Re)define the view over every file of the stage unless it was bound from the same
    folder listing (`_listing`), recorded in `stage_listings` with it."""
    listing = _listing(folder)
    bound = con.execute(
        "SELECT count(*) FROM stage_listings s JOIN duckdb_views() v ON v.view_name = s.view_name"
        " AND v.database_name = current_database() AND v.schema_name = current_schema()"
        " WHERE s.view_name = ? AND s.listing = ?",
        [base, listing],
    ).fetchall()
    if bound[0][0]:
        return
    con.execute(
        f"CREATE OR REPLACE VIEW {base} AS "
        f"SELECT * FROM read_parquet('{files}', union_by_name = true)"
    )
    con.execute("INSERT OR REPLACE INTO stage_listings VALUES (?, ?)", [base, listing])


@contextmanager
def _connect(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = quiet_connect(str(database_path(warehouse)), config=connect_config(warehouse))
    try:
        restrict_to_directories(con, readable_directories(warehouse))
        con.execute(_SCHEMA)
        yield con
    finally:
        con.close()


@contextmanager
def _session(warehouse: Path, connection: Any) -> Iterator[duckdb.DuckDBPyConnection]:
    """`connection` (already restricted to `readable_directories`) with the schema, else a
    connection of this module's own."""
    if connection is None:
        with _connect(warehouse) as con:
            yield con
    else:
        connection.execute(_SCHEMA)
        yield connection


def prepare_stage(
    warehouse: Path,
    domain: str,
    stage: str,
    days: Sequence[date],
    trailing_days: int | None,
    connection: Any = None,
) -> StageViews:
    """(Re)define the stage's views and record which days the coming validation covers.

    `trailing_days`, when given, fills `trailing_row_counts` for the checked days: each day's
    rows and the median of the stage's daily row counts over the `trailing_days` days before it
    (NULL without history, which GE does not count against the expectation). `connection`, if
    given, is a DuckDB connection to the file set up as `gx_dialect` sets GE's up (settings of
    `connect_config`, file access restricted); it stays open.
    """
    base = _identifier(domain, stage)
    views = StageViews(checked=f"{base}__checked", row_counts=f"{base}__row_counts")
    files = f"{domain}/{stage}/*.parquet"
    folder = warehouse / domain / stage
    if not folder.is_dir():
        raise FileNotFoundError(f"no stored output for {domain}/{stage} under {warehouse}")
    with _session(warehouse, connection) as con:
        con.execute("BEGIN TRANSACTION")  # one commit (and one fsync) for the whole preparation
        try:
            _define_stage_view(con, base, folder, files)
            source = _checked_source(con, warehouse, domain, stage, days)
            con.execute(
                f"CREATE OR REPLACE VIEW {views.checked} AS SELECT * FROM {source} WHERE "
                f"partition_date IN (SELECT partition_date FROM checked_days WHERE view_name = "
                f"'{base}')"
            )
            con.execute(
                f"CREATE OR REPLACE VIEW {views.row_counts} AS SELECT * EXCLUDE (view_name) "
                f"FROM trailing_row_counts WHERE view_name = '{base}'"
            )
            con.execute("DELETE FROM checked_days WHERE view_name = ?", [base])
            con.execute(
                "INSERT INTO checked_days SELECT ?, unnest(?::DATE[])", [base, sorted(set(days))]
            )
            con.execute("DELETE FROM trailing_row_counts WHERE view_name = ?", [base])
            window = None
            if trailing_days is not None and days:
                window = _day_files(warehouse, domain, stage, _window_days(days, trailing_days))
            if trailing_days is not None and window is not None:
                con.execute(
                    f"""
                    INSERT INTO trailing_row_counts
                    WITH counts AS (
                        SELECT partition_date, count(*)::BIGINT AS row_count
                        FROM read_parquet({window}, union_by_name = true) GROUP BY ALL
                    ), checked AS (
                        SELECT c.partition_date, c.row_count, (
                            SELECT median(h.row_count) FROM counts h
                            WHERE h.partition_date < c.partition_date
                            AND h.partition_date >= c.partition_date - ?::INTEGER
                        ) AS trailing_median
                        FROM counts c WHERE c.partition_date IN (SELECT unnest(?::DATE[]))
                    )
                    SELECT ?, partition_date, row_count, ?, trailing_median,
                        row_count / nullif(trailing_median, 0) FROM checked
                    """,
                    [trailing_days, sorted(set(days)), base, trailing_days],
                )
        except BaseException:
            con.execute("ROLLBACK")  # a shared connection goes on to GE's queries
            raise
        con.execute("COMMIT")
    return views

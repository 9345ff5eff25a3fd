"""Rewriting the home's databases so that what retention removed is gone from their bytes.

A DELETE or an UPDATE leaves the old row versions in the file: DuckDB reuses the blocks later,
SQLite keeps free pages, and either can be read with a hex editor. Retention therefore ends by
rewriting every database of the home:
- DuckDB files (the audit database, the expectations' warehouse database): copied into a fresh
  file with `COPY FROM DATABASE` (tables, constraints, views; live rows only) that replaces the
  old one atomically, while the old file is still held open so no writer slips in between;
- SQLite files (Dagster's run and event-log storage, MLflow, Feast): `VACUUM` rebuilds them
  from live pages. Dagster's event metadata is first scrubbed of the keys that once carried
  raw values (`PERSONAL_METADATA_KEYS`; ingestion masks them at the source now, homes made
  before still hold them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hitl_gate.core.database import maintenance_connection

PERSONAL_METADATA_KEYS = ("quarantine_sample",)
SCRUBBED = "_removed by retention_"
SQLITE_MAGIC = b"SQLite format 3\x00"
DUCKDB_MAGIC = b"DUCK"  # at offset 8 of a DuckDB file


@dataclass(frozen=True)
class StoreRewrite:
    """One database rewritten: its path, its kind, and how many metadata values were scrubbed."""

    path: Path
    kind: str  # duckdb | sqlite
    scrubbed: int = 0


def database_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every DuckDB and SQLite file under `root`, recognised by its header, in path order."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        with path.open("rb") as handle:
            head = handle.read(16)
        if head == SQLITE_MAGIC:
            yield path, "sqlite"
        elif head[8:12] == DUCKDB_MAGIC:
            yield path, "duckdb"


def rewrite_stores(root: Path) -> list[StoreRewrite]:
    """Rewrite every database under `root` (the home) from its live content only."""
    done = []
    for path, kind in list(database_files(root)):
        if kind == "duckdb":
            compact_duckdb(path)
            done.append(StoreRewrite(path, kind))
        else:
            done.append(StoreRewrite(path, kind, vacuum_sqlite(path)))
    return done


def compact_duckdb(path: Path) -> None:
    """Replace the DuckDB file by a fresh copy of its live content (same name, atomic).

    The copy is made and renamed over the original while the connection to the original is
    open, so its lock keeps every other writer out until the fresh file is in place.
    """
    fresh = path.with_name(f".{path.name}.rewrite-{uuid.uuid4().hex}")
    try:
        with maintenance_connection(path) as con:
            con.execute("CHECKPOINT")
            (name,) = con.execute("SELECT current_database()").fetchall()[0]
            con.execute(f"ATTACH '{_quoted(fresh)}' AS hitl_fresh")
            con.execute(f'COPY FROM DATABASE "{name}" TO hitl_fresh')
            con.execute("DETACH hitl_fresh")
            _fsync(fresh)
            os.replace(fresh, path)
            _fsync(path.parent)
    finally:
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def vacuum_sqlite(path: Path) -> int:
    """Scrub personal metadata from a SQLite store, then `VACUUM` it; return values scrubbed."""
    con = sqlite3.connect(path, timeout=60)
    try:
        scrubbed = _scrub_metadata(con)
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    return scrubbed


def _scrub_metadata(con: sqlite3.Connection) -> int:
    """Blank `PERSONAL_METADATA_KEYS` entries in every JSON text column that mentions one."""
    scrubbed = 0
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = [
            r[1]
            for r in con.execute(f'PRAGMA table_info("{table}")')
            if r[2].upper() in ("TEXT", "VARCHAR", "") or "CHAR" in r[2].upper()
        ]
        for column in columns:
            for key in PERSONAL_METADATA_KEYS:
                rows = con.execute(
                    f'SELECT rowid, "{column}" FROM "{table}" WHERE instr("{column}", ?) > 0',
                    [key],
                ).fetchall()
                for rowid, text in rows:
                    try:
                        document = json.loads(text)
                    except (TypeError, ValueError):
                        continue
                    count = _scrub(document, key)
                    if count:
                        con.execute(
                            f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                            [json.dumps(document, separators=(",", ":")), rowid],
                        )
                        scrubbed += count
    return scrubbed


def _scrub(node: Any, key: str) -> int:
    """Blank every metadata value named `key` in a JSON tree; return how many were blanked.

    Dagster stores metadata as `EventMetadataEntry` objects (`label` = the key, the value in
    `entry_data`), and newer objects as a mapping from key to value; both are handled. A
    Markdown value keeps its class (only `md_str` changes), so Dagster still reads it.
    """
    count = 0
    if isinstance(node, dict):
        if node.get("label") == key and isinstance(node.get("entry_data"), dict):
            return _blank(node, "entry_data")
        for name in list(node):
            count += _blank(node, name) if name == key else _scrub(node[name], key)
    elif isinstance(node, list):
        count += sum(_scrub(item, key) for item in node)
    return count


def _holds_values(markdown: str) -> bool:
    """Whether a sample table has a column of raw values: the old sample's `value` and
    `message` did; the masked sample (`ingest.report.quarantine_sample`) is kept as it is."""
    header = markdown.split("\n", 1)[0]
    return "| value |" in header or "| message |" in header or "|" not in header


def _blank(parent: dict[str, Any], name: str) -> int:
    """Blank `parent[name]` (its `md_str` if it is a Markdown value); 1 if it changed."""
    value = parent[name]
    if isinstance(value, dict) and "md_str" in value:
        if value["md_str"] == SCRUBBED or not _holds_values(str(value["md_str"])):
            return 0
        value["md_str"] = SCRUBBED
        return 1
    if value == SCRUBBED:
        return 0
    parent[name] = SCRUBBED
    return 1

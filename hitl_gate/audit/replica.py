"""The auditors' replica: the audit database as Parquet files, refreshed after every seal.

Auditors never open the live `audit.duckdb`: DuckDB lets one process write a file only while
no other process has it open, so an auditor's session there made seals fail and runs wait,
and a DuckDB client of another version cannot open the live file at all. The replica is
decided as Parquet plus views, not a copied DuckDB file, because Parquet is read by every
DuckDB version (and pandas, Spark, R) while a DuckDB file only by versions of its storage
format:

    <home>/replica/snapshots/<time>-seq<head>/<table>.parquet   each lineage table's rows
                                               <table>.<k>.parquet   rows added since (parts)
                                               manifest.json     head seq, time, row counts,
                                                                 each table's parts (their
                                                                 rows and largest `rowid`)
                                                                 and stamp
    <home>/replica/current -> snapshots/<newest>                switched atomically
    <home>/replica/views.sql      every table as a view over the newest snapshot's own files,
                                  then the schema's views
    <home>/replica/audit.duckdb   the same views in a DuckDB file (for GUI clients;
                                  written in `.building/`, `replica_views`)

A refresh writes a whole snapshot aside, renames it into place, then replaces `views.sql` and
`audit.duckdb` (each by `rename`) and switches `current`. It is incremental: copying every
table cost about 8.5 s per million rows per seal, while a seal mostly appends. Each table's
manifest entry keeps a stamp (columns, row count, largest `rowid`, and the sum of DuckDB's
`hash` of every row); a refresh hashes the live table once and, when the rows up to the
previous largest `rowid` still have the previous count and hash sum (nothing changed,
updated or deleted), hard-links the previous snapshot's parts into the new one and writes
only the rows past that `rowid` as one more part; otherwise it writes the table anew. Parts
merge by size, as a log-structured merge does (`kept_parts`): the new rows take over the parts
at the end that hold at most twice what is written, as long as the rows rewritten stay within
`MERGE_ROWS`. So no refresh rewrites the whole history (a fixed limit on the number of parts
did, every so many refreshes), at most `MERGE_ROWS` rows besides the new ones, and a table's
parts stay about its rows over `MERGE_ROWS / 2` plus the binary logarithm of `MERGE_ROWS`
(a part of a 1M-case day's decisions is written once and then only linked). A hard link
is a second name of the same immutable file, so every snapshot stays self-contained
(pruning an old one removes names, not the files the newer ones hold) and a session on an old
snapshot never sees a change. The hash sum detects change; it is no
evidence (the seal and `hitl audit verify` are): retention, whose point is that no copy of a
redacted value survives, rewrites every table (`reuse=False`). Nobody but the refresh ever opens
these files for writing, so an auditor's session blocks nothing. The views name the
snapshot's own folder, never `current/`: DuckDB opens a file by its path more than once in
one query (metadata, then row groups in parallel), so a path switched mid-query gave torn
reads ("don't know what type", seen under load). A session therefore reads the one sealed
snapshot that was newest when it opened, consistently, and a new session reads the newest.
A snapshot stays for `grace` after a newer one replaced it (and the newest `keep` always), so
sessions opened on it keep working; retention's refresh passes no grace, so no copy of a
redacted value stays behind.

The tables are read through the sealing connection as Arrow batches and written by pyarrow,
so the audit database's restricted file access (`core.database`) stays as it is.

What per-run segments sealed (`run_seal.py`) is not in `audit.duckdb` (the fold copies no
entry): `audit_segment_log` in the replica is one Parquet part per folded leaf
(`audit_segment_log.leaf-<leaf_seq>.parquet`: the segment's entries after its previous leaf
up to the leaf's checkpoint), read from the segment file attached read-only (`segments`; the
connection must have been opened with that file among its `attachable` ones, as the fold's
is for its own segment) and written once: a later snapshot links it while the leaf is
unchanged (same segment, checkpoint and head). A leaf whose segment this connection may not
attach is listed under `unread_leaves` in the manifest and written by the next refresh that
may. Retention's refresh (`reuse=False`) writes them anew too, as every table: it carries no
file of an earlier snapshot over.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from hitl_gate.audit.replica_views import VIEWS_SQL, table_views, views_script, write_views_db
from hitl_gate.audit.run_segments import Segments, attached_segment, file_problem
from hitl_gate.audit.seal import memory_limited

CACHES = frozenset({"audit_seen_rows", "audit_segment_pending"})  # seal caches: not evidence
BATCH_ROWS = 250_000
DEFAULT_KEEP = 3
# The most rows of earlier parts a refresh rewrites into its new part (`kept_parts`): a part
# of a million rows (a 1M-case day's decisions) is written once and only linked after.
MERGE_ROWS = 1_000_000
# `part_max_rowids` of a part listed by a manifest that kept no part sizes (written before
# parts merged), but its last: linked while the table is unchanged, never merged (its bounds
# are unknown; the last part carries their rows and the table's largest rowid then).
UNSIZED = -2
# How long a replaced snapshot stays for the sessions opened on it (a day of an auditor's work).
DEFAULT_GRACE = timedelta(hours=8)
SEGMENT_LOG = "audit_segment_log"  # segment entries: a part per folded leaf, read in place
SEGMENT_ALIAS = "replicated_segment"
# DuckDB's memory limit while a leaf is read from its segment: a scan that never reads a block
# twice, whose cache of segment blocks would otherwise fill the connection's limit for nothing.
LEAF_READ_MEMORY_LIMIT = "256MB"
CURRENT = "current"
SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class ReplicaSnapshot:
    """One refresh: its folder, the log head it holds and each table's row count."""

    folder: Path
    head_seq: int
    rows: dict[str, int]


def refresh_replica(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    *,
    keep: int = DEFAULT_KEEP,
    grace: timedelta = DEFAULT_GRACE,
    reuse: bool = True,
    segments: Segments | None = None,
    merge_rows: int = MERGE_ROWS,
) -> ReplicaSnapshot:
    """Write a snapshot of every lineage table under `folder`, then make it the current one.

    With `reuse`, a table's parts in the current snapshot are hard-linked and only its new
    rows written, when its stamp shows the rows they hold unchanged (module docstring; the
    new rows take over the small parts at the end while the part stays under `merge_rows`).
    `segments`: where the folded segments' files are, for the leaves not in the current
    snapshot yet (module docstring; None: those are left unread).
    """
    folder = folder.resolve()
    snapshots = folder / SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    head = int(con.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchall()[0][0])
    now = datetime.now(UTC)
    name = f"{now:%Y%m%dT%H%M%S%fZ}-seq{head}"
    staging = snapshots / f".{name}.partial"
    staging.mkdir()
    previous = _previous_tables(folder) if reuse else {}
    names = lineage_tables(con)
    columns = _columns(con, names)
    copied = [table for table in names if table != SEGMENT_LOG]
    stamps = _stamps(con, copied, previous, columns)
    tables = {
        table: _copy_table(con, table, staging, previous.get(table), stamps[table], merge_rows)
        for table in copied
    }
    leaves = SegmentLeaves(TableCopy((), 0, -1, "", "", (), ()), {}, [])
    if SEGMENT_LOG in names:  # a database made before segments has none
        earlier = _previous_leaves(folder) if reuse else {}
        leaves = _segment_log(
            con, staging, previous.get(SEGMENT_LOG), earlier, segments, columns[SEGMENT_LOG]
        )
        tables[SEGMENT_LOG] = leaves.copy
    rows = {table: entry.rows for table, entry in tables.items()}
    manifest = {
        "head_seq": head,
        "refreshed_at": now.isoformat(),
        "rows": rows,
        "tables": {table: entry.as_json() for table, entry in tables.items()},
        "segment_leaves": leaves.parts,
        "unread_leaves": leaves.unread,
    }
    # One line: `json` encodes without `indent` in C, with it in Python (a tenth of a small
    # home's refresh, whose manifest lists every table's parts and stamp).
    (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    final = snapshots / name
    staging.rename(final)
    views = table_views(final, {table: entry.parts for table, entry in tables.items()})
    _replace_text(folder / VIEWS_SQL, views_script(final, views))
    write_views_db(folder, views)
    _switch_current(folder, final)
    _prune(snapshots, final, keep, grace)
    return ReplicaSnapshot(final, head, rows)


@dataclass(frozen=True)
class TableCopy:
    """A table in a snapshot: its Parquet parts (file names) and the stamp they were taken at.

    `hash_sum` is the sum of DuckDB's `hash` of every row (a decimal string: it exceeds 64
    bits), `max_rowid` the largest `rowid` then (-1 for an empty table). Per part, in order:
    `part_rows` its rows and `part_max_rowids` the largest `rowid` it holds (each part holds
    the rows past the previous part's), what a merge needs to rewrite the parts at the end.
    """

    parts: tuple[str, ...]
    rows: int
    max_rowid: int
    hash_sum: str
    columns: str
    part_rows: tuple[int, ...]
    part_max_rowids: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "parts": list(self.parts),
            "rows": self.rows,
            "max_rowid": self.max_rowid,
            "hash_sum": self.hash_sum,
            "columns": self.columns,
            "part_rows": list(self.part_rows),
            "part_max_rowids": list(self.part_max_rowids),
        }


@dataclass(frozen=True)
class PreviousTable:
    """A table as the current snapshot holds it: where its parts are, and their stamp."""

    folder: Path
    copy: TableCopy


def _part_sizes(entry: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A manifest entry's `part_rows` and `part_max_rowids`; for an entry written before
    parts had sizes, its rows and largest rowid on the last part and the others `UNSIZED`
    (never merged: a refresh after an upgrade links the old parts instead of rewriting the
    history)."""
    if "part_rows" not in entry and "part_max_rowids" not in entry:
        count = len(entry["parts"])
        return (0,) * (count - 1) + (int(entry["rows"]),), (
            *(UNSIZED,) * (count - 1),
            int(entry["max_rowid"]),
        )
    rows = tuple(int(n) for n in entry["part_rows"])
    return rows, tuple(int(rowid) for rowid in entry["part_max_rowids"])


def _previous_tables(folder: Path) -> dict[str, PreviousTable]:
    """The current snapshot's tables that can be reused (every part present), by name."""
    manifest = current_manifest(folder)
    if manifest is None or "tables" not in manifest:
        return {}
    snapshot = (folder / CURRENT).resolve()
    found = {}
    for table, entry in manifest["tables"].items():
        try:
            copy = TableCopy(
                tuple(entry["parts"]),
                int(entry["rows"]),
                int(entry["max_rowid"]),
                str(entry["hash_sum"]),
                str(entry["columns"]),
                *_part_sizes(entry),
            )
        except (KeyError, TypeError, ValueError):
            continue  # a manifest this code did not write: the table is written anew
        if len(copy.part_rows) != len(copy.parts) or len(copy.part_max_rowids) != len(copy.parts):
            continue
        if all((snapshot / part).is_file() for part in copy.parts):
            found[table] = PreviousTable(snapshot, copy)
    return found


@dataclass(frozen=True)
class _Stamp:
    """A table's stamp now (`TableCopy`'s fields but its parts), and the count and hash sum of
    its rows up to the previous snapshot's largest `rowid` (what those parts hold if unchanged)."""

    rows: int
    max_rowid: int
    hash_sum: str
    columns: str
    old_rows: int
    old_hash: str


def _stamps(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    previous: Mapping[str, PreviousTable],
    columns: Mapping[str, str],
) -> dict[str, _Stamp]:
    """Every table's stamp (`_Stamp`; `columns`: `_columns`), in two queries: a refresh reads
    some fifty tables, most of them a handful of rows, where a statement per table cost more
    than the rows (DuckDB plans each statement; one `UNION ALL` is planned once).

    The first counts every table's rows; the second hashes the rows of the tables that have
    any (an empty table's stamp is known: no rows, largest `rowid` -1, hash sum 0). Planning
    the hash of every table was most of a small home's stamps, whose tables are mostly empty.
    Each table's rows are hashed by one aggregate grouped by whether the row is past the
    previous largest `rowid` (at most two groups), and the totals added here: two filtered
    hash sums per table, what this was before, doubled the query's cost. The sums are exact
    integers (DuckDB sums `hash`'s UBIGINT as a HUGEINT), so a stamp is the same text either
    way."""
    for table in tables:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"not a table name: {table!r}")
    # By table: [rows, largest rowid, hash sum] of the rows up to the previous largest rowid
    # (old) and of all of them.
    old = {table: [0, -1, 0] for table in tables}
    every = {table: [0, -1, 0] for table in tables}
    counted = _union(con, tables, lambda i, table: f'count(*) FROM "{table}"', {})
    filled = [str(table) for table, rows in counted if rows]
    uptos = {
        f"upto_{i}": previous[table].copy.max_rowid if table in previous else -1
        for i, table in enumerate(filled)
    }
    groups = _union(
        con,
        filled,
        lambda i, table: f"rowid <= $upto_{i}, count(*), max(rowid), sum(hash(t))::VARCHAR "
        f'FROM "{table}" AS t GROUP BY ALL',
        uptos,
    )
    for table, is_old, rows, max_rowid, hash_sum in groups:
        for found in (old[str(table)], every[str(table)]) if is_old else (every[str(table)],):
            found[0] += int(rows)
            found[1] = max(found[1], int(max_rowid))
            found[2] += int(hash_sum)
    return {
        table: _Stamp(every[table][0], every[table][1], str(every[table][2]), columns[table],
                      old[table][0], str(old[table][2]))
        for table in tables
    }  # fmt: skip


def _union(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    select: Callable[[int, str], str],
    params: Mapping[str, object],
) -> list[tuple[Any, ...]]:
    """The rows of `SELECT <table name>, <select(i, table)>` for every table, in one query
    (none without tables); `params`: the parameters the selects name besides the names."""
    if not tables:
        return []
    names = {f"table_{i}": table for i, table in enumerate(tables)}
    query = " UNION ALL ".join(
        f"SELECT $table_{i}, {select(i, table)}" for i, table in enumerate(tables)
    )
    return con.execute(query, {**names, **params}).fetchall()


def _copy_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    staging: Path,
    previous: PreviousTable | None,
    now: _Stamp,
    merge_rows: int,
) -> TableCopy:
    """`table` into `staging`: its previous parts linked plus its new rows (merged with the
    small parts at the end, `kept_parts`), or written anew (`now`: its stamp, `_stamps`)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    if (
        previous is None
        or previous.copy.columns != now.columns
        or (now.old_rows, now.old_hash) != (previous.copy.rows, previous.copy.hash_sum)
    ):
        _write_rows(con, f'SELECT * FROM "{table}"', staging / _part_name(table, 0))
        return TableCopy((_part_name(table, 0),), now.rows, now.max_rowid, now.hash_sum,
                         now.columns, (now.rows,), (now.max_rowid,))  # fmt: skip
    old = previous.copy
    new_rows = now.rows - now.old_rows
    unsized = [i for i, rowid in enumerate(old.part_max_rowids) if rowid == UNSIZED]
    frozen = unsized[-1] + 2 if unsized else 0  # and the part carrying their rows
    keep = kept_parts(old.part_rows, new_rows, merge_rows) if new_rows else len(old.parts)
    keep = max(keep, frozen)
    parts, part_rows, uptos = old.parts[:keep], old.part_rows[:keep], old.part_max_rowids[:keep]
    for part in parts:
        _link(previous.folder / part, staging / part)
    if keep < len(old.parts) or new_rows:
        after = uptos[-1] if uptos else -1
        part = _part_name(table, keep)
        _write_rows(con, f'SELECT * FROM "{table}" WHERE rowid > {int(after)}', staging / part)
        parts, part_rows = (*parts, part), (*part_rows, now.rows - sum(part_rows))
        uptos = (*uptos, now.max_rowid)
    return TableCopy(parts, now.rows, now.max_rowid, now.hash_sum, now.columns, part_rows, uptos)


def kept_parts(part_rows: Sequence[int], new_rows: int, merge_rows: int) -> int:
    """How many of a table's parts (their rows `part_rows`, in order) stay as they are when
    `new_rows` rows are added; the rest are written again in one part with the new rows.

    A log-structured merge: the part before the one being written joins it while it holds at
    most twice what is being written, and the rows rewritten (the new ones aside) stay within
    `merge_rows`. Small appends merge like a binary counter, so a row is rewritten about
    log2(`merge_rows` / rows per refresh) times in all, never more than `merge_rows` rows at
    once; two small parts left side by side differ by more than twice, so the parts below
    `merge_rows / 2` stay few (about log2 `merge_rows`) and the larger ones are at most the
    rows over `merge_rows / 2`.
    """
    keep, written, rewritten = len(part_rows), new_rows, 0
    while (
        keep
        and part_rows[keep - 1] <= 2 * written
        and rewritten + part_rows[keep - 1] <= merge_rows
    ):
        written += part_rows[keep - 1]
        rewritten += part_rows[keep - 1]
        keep -= 1
    return keep


def _part_name(table: str, position: int) -> str:
    """The file of `table`'s part at `position`: the first one `<table>.parquet`, then
    `<table>.<position>.parquet` (a merged part takes the position of the first it replaces;
    the file it replaces is not linked into the snapshot)."""
    return f"{table}.parquet" if position == 0 else f"{table}.{position}.parquet"


@dataclass(frozen=True)
class SegmentLeaves:
    """`audit_segment_log` in a snapshot: its parts, what leaf each holds, leaves left unread."""

    copy: TableCopy
    parts: dict[str, dict[str, Any]]
    unread: list[int]


def _previous_leaves(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The current snapshot's segment-log parts that are still there, by file name."""
    manifest = current_manifest(folder)
    if manifest is None or not isinstance(manifest.get("segment_leaves"), dict):
        return {}
    snapshot = (folder / CURRENT).resolve()
    return {
        part: (snapshot / part, leaf)
        for part, leaf in manifest["segment_leaves"].items()
        if isinstance(leaf, dict) and (snapshot / part).is_file()
    }


def _segment_log(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    held: PreviousTable | None,
    previous: dict[str, tuple[Path, dict[str, Any]]],
    segments: Segments | None,
    columns: str,
) -> SegmentLeaves:
    """`audit_segment_log` (its `columns`, `_columns`): an empty part holding the columns,
    then a part per folded leaf; each linked from the current snapshot while the same, else
    written (a leaf's read from its segment)."""
    empty = f"{SEGMENT_LOG}.parquet"
    if held is not None and held.copy.columns == columns and (held.folder / empty).is_file():
        _link(held.folder / empty, staging / empty)
    else:
        _write_rows(con, f"SELECT * FROM main.{SEGMENT_LOG} LIMIT 0", staging / empty)
    parts: dict[str, dict[str, Any]] = {}
    unread: list[int] = []
    rows = 0
    wanted: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # by segment: leaves to write
    after: dict[str, int] = {}  # each segment's last_seq before the leaf
    for leaf_seq, segment, last_seq, head in _leaves(con):
        leaf: dict[str, Any] = {"segment_id": segment, "first_seq": after.get(segment, 0) + 1,
                "last_seq": last_seq, "head_hash": head}  # fmt: skip
        after[segment] = last_seq
        part = f"{SEGMENT_LOG}.leaf-{leaf_seq}.parquet"
        known = previous.get(part)
        if known is not None and known[1] == leaf:
            _link(known[0], staging / part)
            parts[part] = leaf
            rows += last_seq - leaf["first_seq"] + 1
        else:
            wanted.setdefault(segment, []).append((part, leaf))
    for segment, todo in wanted.items():
        try:
            if segments is None or file_problem(segments, segment) is not None:
                raise RuntimeError(segment)
            with (
                attached_segment(con, segments, segment, SEGMENT_ALIAS) as alias,
                memory_limited(con, LEAF_READ_MEMORY_LIMIT),
            ):
                for part, leaf in todo:
                    # No ORDER BY: the seal appends a segment's log in seq order and a
                    # filtered scan keeps it (sorting a million entries cost 0.25 CPU s).
                    _write_rows(
                        con,
                        f"SELECT {_literal(segment)}::VARCHAR AS segment_id, seq, entry_hash, "
                        f"entry FROM {alias}.main.audit_log WHERE seq >= {int(leaf['first_seq'])}"
                        f" AND seq <= {int(leaf['last_seq'])}",
                        staging / part,
                    )
                    parts[part] = leaf
                    rows += leaf["last_seq"] - leaf["first_seq"] + 1
        except (RuntimeError, ValueError):  # not attachable here, missing, or not a segment id
            # (verify names the last two): written by a later refresh that can
            unread += [_leaf_number(part) for part, _ in todo]
    names = (empty, *sorted(parts, key=_leaf_number))
    part_rows = (0, *(parts[n]["last_seq"] - parts[n]["first_seq"] + 1 for n in names[1:]))
    copy = TableCopy(names, rows, -1, "", columns, part_rows, (-1,) * len(names))
    return SegmentLeaves(copy, parts, sorted(unread))


def _leaves(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, int, str]]:
    """Every folded leaf (leaf_seq, segment, last_seq, head), in order (none before the
    segment tables existed)."""
    (present,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' "
        "AND table_name = 'audit_segment_leaves'"
    ).fetchall()[0]
    if not present:
        return []
    found = con.execute(
        "SELECT leaf_seq, segment_id, last_seq, head_hash FROM main.audit_segment_leaves "
        "ORDER BY leaf_seq"
    ).fetchall()
    return [(int(a), str(b), int(c), str(d)) for a, b, c, d in found]


def _leaf_number(part: str) -> int:
    return int(part.rsplit("-", 1)[-1].split(".")[0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns(con: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> dict[str, str]:
    """Each table's columns and types, in order (a changed table shape means a full rewrite),
    by table: one catalogue query for all of them."""
    found = con.execute(
        "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' "
        "ORDER BY column_index) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' GROUP BY table_name"
    ).fetchall()
    # Filtered here: `list_contains` of the names as a parameter cost 7 ms of a 10 ms query.
    wanted = set(tables)
    return {str(table): str(columns) for table, columns in found if table in wanted}


def _link(source: Path, target: Path) -> None:
    """`target` as a second name of the immutable `source` (a copy across file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_rows(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    """Stream `query` into the Parquet file `target` in Arrow batches, then make it read-only."""
    reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
    with pq.ParquetWriter(target, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    target.chmod(0o444)


def lineage_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The audit database's tables the replica carries (every base table but the caches)."""
    found = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary "
        "ORDER BY table_name"
    ).fetchall()
    return [name for (name,) in found if name not in CACHES]


def _replace_text(path: Path, text: str) -> None:
    aside = path.with_name(f".{path.name}.new")
    aside.write_text(text, encoding="utf-8")
    aside.replace(path)


def _switch_current(folder: Path, target: Path) -> None:
    """Point `folder/current` at `target` in one `rename` (readers see old or new)."""
    aside = folder / f".{CURRENT}.new"
    aside.unlink(missing_ok=True)
    aside.symlink_to(Path(SNAPSHOTS) / target.name, target_is_directory=True)
    os.replace(aside, folder / CURRENT)


def _prune(snapshots: Path, current: Path, keep: int, grace: timedelta) -> None:
    """Remove the snapshots beyond the newest `keep` that were replaced more than `grace` ago
    (never the current one), and stale partials."""
    done = sorted(p for p in snapshots.iterdir() if not p.name.startswith("."))
    now = datetime.now(UTC).timestamp()
    for index, old in enumerate(done[: max(len(done) - keep, 0)]):
        replaced_at = done[index + 1].stat().st_mtime  # when its successor was written
        if old != current and now - replaced_at >= grace.total_seconds():
            shutil.rmtree(old, ignore_errors=True)
    for partial in snapshots.glob(".*.partial"):
        if partial.stat().st_mtime < current.stat().st_mtime:
            shutil.rmtree(partial, ignore_errors=True)


def current_manifest(folder: Path) -> dict | None:
    """The manifest of the snapshot `current` points at, or None before the first refresh."""
    path = folder / CURRENT / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

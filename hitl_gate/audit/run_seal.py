"""A run's seal through its own segment: the expensive part runs without the global writer.

DuckDB lets one process write `audit.duckdb`, so seals into its single chain queue behind
each other and behind every stage's writes. With segments (`HitlSettings.audit_segments`,
docs/audit.md "Room to grow") the end-of-run seal is cut in three steps:

1. **pick** (`pick_rows`, under the `audit.duckdb` writer, short): the change detection of
   today's seal (fingerprints of the rows not in `audit_seen_rows`) selects the versioned
   tables' new rows (of a day-partitioned table, only the run's domain and days: `Scope`)
   and copies them, as stored, into the run's segment file
   (`<home>/audit/segments/<segment id>.duckdb`, plain tables with the same columns and
   types, so they render and hash to the same canonical bytes);
2. **seal** (`seal_picked`, no global file open): the ordinary seal on the segment renders,
   hashes, chains, Merkle-hashes and signs those rows into the segment's own chain and
   checkpoint, then drops the copies (the segment keeps its chain, never the data). Runs of
   different domains or days do this at the same time;
3. **fold** (`fold_picked`, under the writer again and the segments lock file, short): the
   segment, attached read-only to the writer's session, has its checkpoint checked and made
   a leaf of the global log, under a newly signed global checkpoint
   (`run_segments.fold_segments`); the segment's fingerprints are recorded as seen in
   `audit.duckdb` (only now, so a run killed before its fold leaves its rows to the next
   seal, never unlogged), and the global checkpoints go to the witness
   (`global_checkpoints.jsonl`). The segment's entries are not copied: whoever lists them
   (the auditors' views in a session, the replica, the bundle) reads the sealed segment file
   in place (`read_segments_in_place`), as verify does.

What goes where, and why: only **versioned** tables (decisions, quarantine, batches, input
files, outcomes, accounting...: the bulk of a day) go to the segment. Insert-once tables stay
on the single chain of `audit.duckdb`, sealed in the writer's connection as today: their
clash check (a key logged with another digest is an edit) needs every earlier digest of the
key at render time, the step-owned ones (executions, verdicts, opinions) are sealed by the
step that wrote them on its own connection (a guarantee that rests on the single writer),
and the execution check reads activations, halts and resolutions from that chain.
`hitl audit verify` checks both: the single chain as before, then every segment and global
checkpoint (`run_segments.verify_segments`), and compares every lineage row with the
envelopes of the single chain and of every folded segment entry.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from hitl_gate.audit.events import (
    CHAIN_EVENTS,
    EVENT_SOURCES,
    EventSource,
    SourceSql,
    source_sql,
    table_columns,
)
from hitl_gate.audit.replica import refresh_replica
from hitl_gate.audit.run_segments import (
    GLOBAL_FIELDS,
    LOCK_FILE,
    SegmentReport,
    Segments,
    attach_segment,
    attached_segment,
    file_problem,
    fold_segments,
    global_message,
    verify_segments,
)
from hitl_gate.audit.seal import (
    BATCH_ROWS,
    SEAL_MEMORY_LIMIT,
    STEP_OWNED,
    OwnedKeys,
    SealRefused,
    SealResult,
    memory_limited,
    seal_run,
)
from hitl_gate.audit.trust import KeySchedule, TrustAnchor
from hitl_gate.audit.verify import Finding, VerifyReport, verify_audit
from hitl_gate.audit.witness import (
    GENESIS_LINE,
    STAMP_FIELD,
    TsaCheck,
    WitnessConfig,
    append_lines,
    chained_lines,
    imprint_only_note,
    line_hash,
    read_witness,
    stamp,
    stamp_problems,
)
from hitl_gate.core.database import (
    OpenAttaching,
    audit_connection,
    restrict_file_access,
    transaction,
)
from hitl_gate.core.file_lock import exclusive_lock, is_held, remove_if_free
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.quiet_duckdb import quiet_connect

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

# Versioned tables are sealed in the run's segment; insert-once ones stay on the single chain.
SEGMENT_SOURCES: tuple[EventSource, ...] = tuple(s for s in EVENT_SOURCES if not s.append_only)
CHAIN_SOURCES: tuple[EventSource, ...] = tuple(s for s in EVENT_SOURCES if s.append_only)
GLOBAL_WITNESS_FILE = "global_checkpoints.jsonl"
SEGMENT_LOG = "audit_segment_log"  # the name the views read segment entries by
SEGMENT_ALIAS = "audit_segment"  # the segment, attached to the writer's session by the pick
VERIFY_ALIAS = "verified_segment"  # a folded segment, attached read-only to verify's session
READ_ALIAS = "read_segment"  # folded segments attached read-only to a reading session, numbered
PICKED = "audit_picked"  # temporary: the pick's rowids and fingerprints, per event type
PICKED_COLUMNS = "event_type VARCHAR, rid BIGINT, fingerprint UBIGINT"
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def segment_id(domain: str, days: list[Any], run_id: str) -> str:
    """`<domain>.<first day>_<last day>.<run id>`, reduced to file-name characters."""
    span = f"{min(days)}_{max(days)}" if days else "nodays"
    return _ID_CHARS.sub("-", f"{domain}.{span}.{run_id}").strip(".-") or "segment"


@dataclass(frozen=True)
class Picked:
    """What step 1 copied into a segment: rows per event type (empty: nothing new)."""

    segment_id: str
    rows: dict[str, int]
    # With nothing picked: whether the segment held a checkpoint then (read while the pick had
    # it attached, under the run's claim, so discarding it opens no connection of its own);
    # None: not read.
    sealed: bool | None = None

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@contextmanager
def claim(segments: Segments, segment: str) -> Iterator[None]:
    """Hold the segment's lock file from pick to fold: while it is held, other runs' picks
    leave the segment's pending rows alone; once its run died, they take them back. The file
    is deleted as the claim ends, still held (one per run: none piles up); one a killed run
    left is deleted by the next pick (`_release_abandoned`)."""
    with exclusive_lock(_claim_file(segments, segment), remove=True):
        yield


def _claim_file(segments: Segments, segment: str) -> Path:
    return segments.root / f"{segment}.lock"


@dataclass(frozen=True)
class Scope:
    """The run's domain and partition days: of a day-partitioned table (`domain` and
    `partition_date` columns) a run picks only these rows, so concurrent runs of other
    domains or days seal their own. Rows of other tables are picked by whichever run comes."""

    domain: str
    days: tuple[date, ...]


def pick_rows(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    segment: str,
    sources: tuple[EventSource, ...] = SEGMENT_SOURCES,
    scope: Scope | None = None,
) -> Picked:
    """Step 1, on the `audit.duckdb` writer's connection, under `claim(segment)`: copy every
    row of `sources` whose fingerprint no seal has seen (the seal sweep's own test,
    `events.SourceSlices.find_unseen`) and no live run has picked into the segment, and
    record their fingerprints as pending. Seen is recorded only by `fold_picked`. With
    `scope`, a day-partitioned table's rows of other domains or days are left to their runs
    (or to `hitl audit seal`, which seals every unseen row on the single chain).

    The rows go database to database: the segment is attached to `con` (which must have been
    opened with `segments.database(segment)` among its `attachable` files, and nothing else
    of the segments folder) and filled by `INSERT ... SELECT`, with no Arrow copy in between.
    DuckDB writes one database per transaction, so the copy (reading `audit.duckdb`, writing
    the segment) commits first and the pending fingerprints after it: a run killed between
    the two leaves rows in a segment nobody folds, never a pending fingerprint without its row.
    """
    _release_abandoned(con, segments)
    # Before the segment is attached: its tables share the lineage tables' names, and the
    # catalogue queries of `source_sql` must see the global ones only.
    shapes = table_columns(con, [source.table for source in sources])  # one catalogue query
    found = [
        (source, sql)
        for source in sources
        if (sql := source_sql(con, source, columns=shapes.get(source.table, []))) is not None
    ]
    segments.create(segment)  # with the audit schema, not opened
    try:
        attach_segment(con, segments, segment, SEGMENT_ALIAS)
    except RuntimeError:  # this session may not attach it: nothing was picked
        discard(segments, segment)
        raise
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {PICKED} ({PICKED_COLUMNS})")
        with transaction(con):  # reads audit.duckdb; writes the segment and the temp table
            _same_tables(con, {source.table: shapes[source.table] for source, _ in found})
            for source, sql in found:
                _pick_source(con, source, sql, shapes[source.table], scope)
        rows = {
            str(event_type): int(n)
            for event_type, n in con.execute(
                f"SELECT event_type, count(*) FROM {PICKED} GROUP BY ALL ORDER BY 1"
            ).fetchall()
        }
        with transaction(con):
            con.execute(
                "INSERT INTO audit_segment_pending SELECT DISTINCT ?, event_type, fingerprint "
                f"FROM {PICKED}",
                [segment],
            )
        sealed = None
        if not rows:
            checkpoints = f"SELECT count(*) FROM {SEGMENT_ALIAS}.main.audit_checkpoints"
            sealed = bool(con.execute(checkpoints).fetchall()[0][0])
    finally:
        con.execute(f"DROP TABLE IF EXISTS {PICKED}")
        con.execute(f"DETACH {SEGMENT_ALIAS}")
    return Picked(segment, rows, sealed)


def _pick_source(
    con: duckdb.DuckDBPyConnection,
    source: EventSource,
    sql: SourceSql,
    columns: list[tuple[str, str]],
    scope: Scope | None,
) -> None:
    """One table's unseen rows: rowids and fingerprints into the temporary table, then the
    rows themselves into the segment's table by rowid (stable within the transaction; the
    segment's table made like the global one first, `_same_tables`)."""
    where, params = "", dict[str, object](event_type=source.event_type)
    if scope is not None and {"domain", "partition_date"} <= {name for name, _ in columns}:
        where = "WHERE domain = $domain AND partition_date IN (SELECT unnest($days))"
        params |= {"domain": scope.domain, "days": list(scope.days)}
    con.execute(
        f"INSERT INTO {PICKED} SELECT $event_type, rid, fingerprint FROM (SELECT rowid AS rid, "
        f"{sql.fingerprint} AS fingerprint FROM {sql.table} {where}) WHERE fingerprint NOT IN "
        "(SELECT fingerprint FROM audit_seen_rows WHERE event_type = $event_type UNION ALL "
        "SELECT fingerprint FROM audit_segment_pending WHERE event_type = $event_type)",
        params,
    )
    con.execute(
        f"INSERT INTO {SEGMENT_ALIAS}.main.{sql.table} SELECT * FROM {sql.table} WHERE rowid IN "
        f"(SELECT rid FROM {PICKED} WHERE event_type = $event_type)",
        {"event_type": source.event_type},
    )


def _release_abandoned(con: duckdb.DuckDBPyConnection, segments: Segments) -> None:
    """Take back what runs that died between pick and fold left (nobody holds their claim):
    their pending rows are dropped, so the rows are picked again, and every segment file of
    theirs that no leaf names is removed with its checkpoints.

    The files come from the pending rows and from the folder itself: a run killed between
    the pick's copy and its pending insert (two transactions, `pick_rows`) left a file
    holding copied rows and no pending row naming it. An unfolded segment is evidence of
    nothing (no global checkpoint covers it, no witness saw it) and may still hold the rows
    it copied (a kill before its seal dropped them), so it goes whether sealed or not: the
    byte scan after retention finds no removed value in a segment nobody folds."""
    pending = {
        str(segment)
        for (segment,) in con.execute(
            "SELECT DISTINCT segment_id FROM audit_segment_pending"
        ).fetchall()
    }
    for segment in sorted(pending | _segment_files(segments)):
        if is_held(_claim_file(segments, segment)):
            continue
        con.execute("DELETE FROM audit_segment_pending WHERE segment_id = ?", [segment])
        folded = con.execute(
            "SELECT count(*) FROM audit_segment_leaves WHERE segment_id = ?", [segment]
        ).fetchall()[0][0]
        if not folded:
            discard(segments, segment, sealed_too=True)
    for lock in _claim_files(segments):  # left by killed runs; a live run's stays
        remove_if_free(lock)


def _claim_files(segments: Segments) -> list[Path]:
    """The claims' lock files in the folder (not the fold's `segments.lock`)."""
    if not segments.root.is_dir():
        return []
    return sorted(p for p in segments.root.glob("*.lock") if p.name != LOCK_FILE)


def _segment_files(segments: Segments) -> set[str]:
    """The ids of the segment files in the folder (names `Segments.database` would give)."""
    if not segments.root.is_dir():
        return set()
    found = set()
    for path in segments.root.glob("*.duckdb"):
        segment = path.name.removesuffix(".duckdb")
        try:
            if segments.database(segment) == path and path.is_file() and not path.is_symlink():
                found.add(segment)
        except ValueError:
            continue
    return found


def _same_tables(
    con: duckdb.DuckDBPyConnection, shapes: Mapping[str, list[tuple[str, str]]]
) -> None:
    """Make each attached segment's table of `shapes` a plain table with the global one's
    columns (name, type), in order and type: the canonical JSON is rendered in column order
    from the column types, so the rows hash to the same bytes in both files. No key or index:
    the segment only renders them (the global table's constraints held when they were
    written), and building the indexes cost more than the copy. The segment's catalogue is
    read in two queries for every table (a dozen tables, three statements each, cost a pick
    more than its rows)."""
    tables = list(shapes)
    stored: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "$db AND schema_name = 'main' AND list_contains($tables, table_name) "
        "ORDER BY table_name, column_index",
        {"db": SEGMENT_ALIAS, "tables": tables},
    ).fetchall():
        stored.setdefault(str(table), []).append((str(name), str(kind)))
    keyed = {
        str(table)
        for (table,) in con.execute(
            "SELECT table_name FROM duckdb_indexes() WHERE database_name = $db UNION "
            "SELECT table_name FROM duckdb_constraints() WHERE database_name = $db "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            {"db": SEGMENT_ALIAS},
        ).fetchall()
    }
    for table, columns in shapes.items():
        if stored.get(table, []) != columns or table in keyed:
            name = f"{SEGMENT_ALIAS}.main.{_quote(table)}"
            con.execute(f"DROP TABLE IF EXISTS {name}")
            body = ", ".join(f"{_quote(column)} {kind}" for column, kind in columns)
            con.execute(f"CREATE TABLE {name} ({body})")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def seal_picked(
    segments: Segments,
    picked: Picked,
    run_id: str,
    signer: CheckpointSigner,
    memory_limit: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> SealResult:
    """Step 2, with no global file open: the ordinary seal of the segment's rows into the
    segment's own chain (render, hash, chain, Merkle root, signed checkpoint), in slices of
    about `batch_rows` rows (the run's `seal_rows`: the seal holds two slices' rendered
    entries at once, `seal._read_ahead`, so this and the memory limit bound its memory).

    Every row in the segment's tables is new by construction (the pick copied only rows no
    seal had seen, and the tables are emptied after each seal), so the seal computes and
    keeps no fingerprint there (`fresh`): the change detection was the pick's, under the
    writer, which also keeps a digest from being logged twice, so no log index is written
    (nobody reads a segment's). The copied rows are dropped afterwards: the segment keeps its
    chain (entries, checkpoints), not the data, which stays in `audit.duckdb` only, so
    retention redacts in one place and a segment holds no personal value. Verify compares
    the rows of `audit.duckdb` with the segment's entries (`load_segment_events`)."""
    # Under `memory_limit` to the end, not only in `seal_run`: dropping the copies and the
    # checkpoint after it held +570 MB per extra million rows under DuckDB's default limit.
    with _open_segment(segments, picked.segment_id) as seg, memory_limited(seg, memory_limit):
        result = seal_run(
            seg, run_id, signer, segments.checkpoints(picked.segment_id), SEGMENT_SOURCES,
            batch_rows, memory_limit=memory_limit, fresh=True,
        )  # fmt: skip
        drop_copies(seg)
    return result


def drop_copies(seg: duckdb.DuckDBPyConnection) -> None:
    """Drop a sealed segment's copied rows and checkpoint the file (`seal_picked`)."""
    for source in SEGMENT_SOURCES:
        seg.execute(f"DROP TABLE IF EXISTS {_quote(source.table)}")
    seg.execute("CHECKPOINT")


@contextmanager
def _open_segment(segments: Segments, segment: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """The segment for writing: created with the audit schema the first time, then opened
    as it is (no file access), so the schema's indexes are not rebuilt on the plain tables
    `_same_table` made."""
    segments.create(segment)
    con = quiet_connect(str(segments.database(segment)))
    try:
        restrict_file_access(con)
        yield con
    finally:
        con.close()


def fold_picked(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    picked: Picked,
    signer: CheckpointSigner,
    witness_dir: Path | None,
    tsa_url: str | None = None,
) -> dict[str, Any] | None:
    """Step 3, on the `audit.duckdb` writer's connection, opened with the segment's file
    among its `attachable` files (the fold reads the segment attached read-only): fold the
    segment's checkpoint into the global log, record its fingerprints as seen, publish the
    global checkpoints (each time-stamped by the TSA at `tsa_url`, when one is configured).

    Returns the new global checkpoint (None when the segment has nothing new to fold)."""
    checkpoint = fold_segments(con, segments, [picked.segment_id], signer)
    with transaction(con):  # picked rows are unseen by construction: no anti-join needed
        con.execute(
            "INSERT INTO audit_seen_rows SELECT event_type, fingerprint "
            "FROM audit_segment_pending WHERE segment_id = ?",
            [picked.segment_id],
        )
        con.execute("DELETE FROM audit_segment_pending WHERE segment_id = ?", [picked.segment_id])
    if witness_dir is not None:
        publish_global(con, witness_dir, tsa_url)
    return checkpoint


def publish_global(con: duckdb.DuckDBPyConnection, folder: Path, tsa_url: str | None = None) -> int:
    """Append the global checkpoints the witness has not seen to `global_checkpoints.jsonl`
    (one line each, chained by the SHA-256 of the line before, as `witness.py` does). With
    `tsa_url`, each one's signed message is first time-stamped by that RFC 3161 authority
    (`global-<global_seq>.tsr` beside the file), as the single chain's checkpoints are."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GLOBAL_WITNESS_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    newest = int(json.loads(lines[-1])["checkpoint"]["global_seq"]) if lines else 0
    prev = line_hash(lines[-1]) if lines else GENESIS_LINE
    rows = con.execute(
        "SELECT * FROM audit_global_checkpoints WHERE global_seq > ? ORDER BY global_seq",
        [newest],
    ).fetchall()
    names = [d[0] for d in con.description]
    records = [dict(zip(names, row, strict=True)) for row in rows]
    if tsa_url:
        for record in records:
            stamped = global_stamp(folder, record["global_seq"])
            stamp(tsa_url, global_message(record), stamped)
            record[STAMP_FIELD] = stamped.name  # witnessed: its removal is then named
    lines = chained_lines(records, prev)
    append_lines(path, lines)
    return len(lines)


def global_stamp(folder: Path, global_seq: int) -> Path:
    """Where the RFC 3161 time-stamp of global checkpoint `global_seq` is kept."""
    return folder / f"global-{int(global_seq):012d}.tsr"


def compare_global_witness(
    con: duckdb.DuckDBPyConnection, folder: Path, tsa: TsaCheck | None = None
) -> list[str]:
    """Every witnessed global checkpoint must be in the database, identical (fields and
    signature), and the witness file's own line chain unbroken. With `tsa`, every time-stamp
    beside the file must stamp its checkpoint as the database holds it, and every stamp the
    witness recorded must still be there."""
    read = read_witness(folder / GLOBAL_WITNESS_FILE, "global_seq", "global checkpoint")
    rows = con.execute("SELECT * FROM audit_global_checkpoints ORDER BY global_seq").fetchall()
    names = [d[0] for d in con.description]
    stored = {int(r[0]): dict(zip(names, r, strict=True)) for r in rows}
    problems = list(read.problems)
    for seq, seen in read.checkpoints.items():
        db = stored.get(seq)
        if db is None:
            problems.append(
                f"witnessed global checkpoint {seq} is missing from the database: the global "
                "log was truncated or rewritten"
            )
            continue
        differs = [k for k in (*GLOBAL_FIELDS, "signature") if str(db[k]) != str(seen.get(k))]
        if differs:
            problems.append(
                f"global checkpoint {seq} differs from the one witnessed ({', '.join(differs)}):"
                " the global log was rewritten and re-signed"
            )
    if tsa is not None:
        found = stamp_problems(
            lambda seq: global_stamp(folder, seq), global_message, stored, read.checkpoints,
            tsa, "global checkpoint",
        )  # fmt: skip
        problems += [message for _, message in found]
    return problems


def folded_segments(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Each folded segment and the `last_seq` of its newest leaf (none for a database made
    before the segment tables existed)."""
    if not has_segments(con):
        return []
    rows = con.execute(
        "SELECT segment_id, max(last_seq) FROM audit_segment_leaves GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return [(str(segment), int(last_seq)) for segment, last_seq in rows]


def readable_segments(con: duckdb.DuckDBPyConnection, segments: Segments) -> list[Path]:
    """The files of the folded segments that can be read (`run_segments.file_problem`): what
    a verifying session must be opened with among its `attachable` files for
    `load_segment_events`, read from the database before that session opens (DuckDB sets a
    database's file access once, when it is opened). Nothing else of the folder."""
    return [
        segments.database(segment)
        for segment, _ in folded_segments(con)
        if file_problem(segments, segment) is None
    ]


def load_segment_events(con: duckdb.DuckDBPyConnection, segments: Segments) -> int:
    """Add every folded segment entry's envelope to `events.CHAIN_EVENTS` (after
    `events.load_chain_events`), read from the segment files' own entry texts up to their
    newest folded checkpoint, so the lineage check compares rows with both kinds of chain.

    Database to database: each segment is attached read-only to `con`, which must have been
    opened with the files `readable_segments` names among its `attachable` ones. A missing
    or linked segment file adds nothing (`verify_segments` names it)."""
    added = 0
    for segment, last_seq in folded_segments(con):
        if file_problem(segments, segment) is not None:
            continue
        with attached_segment(con, segments, segment, VERIFY_ALIAS) as alias:
            (rows,) = con.execute(
                f"INSERT INTO {CHAIN_EVENTS} SELECT seq, e[1] AS event_type, e[2] AS entity_key, "
                "e[3] AS content_digest FROM (SELECT seq, json_extract_string(substr(entry, 66),"
                f" ['$.type', '$.key', '$.digest']) AS e FROM {alias}.main.audit_log "
                "WHERE seq <= $last)",
                {"last": last_seq},
            ).fetchall()[0]
        added += int(rows)
    return added


def read_segments_in_place(con: duckdb.DuckDBPyConnection, segments: Segments) -> list[str]:
    """List every folded segment's entries, up to its newest folded checkpoint, as
    `audit_segment_log` in this session, so `audit_events` and `case_history` list both
    chains: each readable segment (`readable_segments`; `con` must have been opened with
    them among its `attachable` files) is attached read-only and a temporary view of that
    name, which shadows the database's table for this session only, reads their `audit_log`
    in place. Returns the segments listed (none: the session is left as it was).

    The fold copies nothing (a copy cost a compressed bulk insert of every entry under the
    writer, and 140 MB per million entries kept twice); a missing or linked segment file is
    left out here and named by verify."""
    parts = []
    for number, (segment, last_seq) in enumerate(folded_segments(con)):
        if file_problem(segments, segment) is not None:
            continue
        alias = f"{READ_ALIAS}_{number}"
        attach_segment(con, segments, segment, alias, read_only=True)
        parts.append((segment, alias, last_seq))
    if parts:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {SEGMENT_LOG} AS "
            + " UNION ALL ".join(
                f"SELECT {_literal(segment)}::VARCHAR AS segment_id, seq, entry_hash, entry "
                f"FROM {alias}.main.audit_log WHERE seq <= {int(last_seq)}"
                for segment, alias, last_seq in parts
            )
        )
    return [segment for segment, _, _ in parts]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def reading_session(audit_db: Path, segments: Segments) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only session on `audit_db` whose `audit_events` and `case_history` list the
    folded segments' entries too (`read_segments_in_place`): it may attach those files and
    nothing else (read from a first session, as `verifying_session` does)."""
    folded = readable_segment_files(audit_db, segments)
    with audit_connection(audit_db, read_only=True, attachable=folded) as con:
        read_segments_in_place(con, segments)
        yield con


def readable_segment_files(audit_db: Path, segments: Segments) -> list[Path]:
    """`readable_segments` of `audit_db`, read on a read-only session of its own (a session
    that attaches them must be opened with them: DuckDB fixes a database's file access when it
    opens it). When the segments folder holds no segment file, none can be readable and no
    session is opened (each starts a DuckDB instance: about 15 ms of CPU)."""
    if not _segment_files(segments):
        return []
    with audit_connection(audit_db, read_only=True) as con:
        return readable_segments(con, segments)


def has_segments(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database has folded any segment (or signed a global checkpoint, or holds a
    copied segment entry); False for a database made before the segment tables existed
    (opened read-only, never migrated)."""
    tables = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name "
            "IN ('audit_segment_leaves', 'audit_global_checkpoints', 'audit_segment_log')"
        ).fetchall()
    }
    return any(
        con.execute(f"SELECT EXISTS (SELECT 1 FROM {name})").fetchall()[0][0] for name in tables
    )


def discard(
    segments: Segments, segment: str, *, sealed_too: bool = False, unsealed: bool = False
) -> None:
    """Remove a segment that was never sealed (no checkpoint): nothing in it to fold. With
    `sealed_too`, also one sealed but never folded (`_release_abandoned`: its run died);
    the caller makes sure no leaf names it. `unsealed`: the caller, holding the segment's
    claim, read that it holds no checkpoint (`Picked.sealed`), so it is not opened again."""
    if not sealed_too and not unsealed and segments.database(segment).is_file():
        with segments.open(segment, read_only=True) as seg:
            if seg.execute("SELECT count(*) FROM audit_checkpoints").fetchall()[0][0]:
                return
    for path in (segments.database(segment), segments.root / f"{segment}.duckdb.wal"):
        path.unlink(missing_ok=True)
    shutil.rmtree(segments.checkpoints(segment), ignore_errors=True)


def seal_and_fold(
    connect: OpenAttaching,
    segments: Segments,
    picked: Picked,
    run_id: str,
    signer: CheckpointSigner,
    *,
    memory_limit: str | None,
    witness_dir: Path | None,
    after: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
    tsa_url: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> SealResult:
    """Steps 2 and 3 after `pick_rows`: seal the segment (in slices of `batch_rows` rows,
    `seal_picked`) with no global file open, then fold
    it on a new writer connection (`connect`), on which `after` runs too (the replica), both
    under `memory_limit` as the segment's seal is (DuckDB's own default is 80% of the
    machine's memory, and its block cache would grow toward it with the day).

    The fold's connection may attach the segment's file and nothing else of the folder, given
    where it is opened: DuckDB sets a database's file access once, for every connection of the
    process to it, and cannot widen it later."""
    result = SealResult(0, None)
    if picked.total:
        result = seal_picked(segments, picked, run_id, signer, memory_limit, batch_rows)
    else:
        discard(segments, picked.segment_id, unsealed=picked.sealed is False)
    folded = [segments.database(picked.segment_id)] if picked.total else []
    with connect(attachable=folded) as con, memory_limited(con, memory_limit):
        if picked.total:
            fold_picked(con, segments, picked, signer, witness_dir, tsa_url)
        if after is not None:
            after(con)
    return result


def check_segments(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    report: VerifyReport,
    witness_dir: Path | None,
    tsa: TsaCheck | None = None,
) -> SegmentReport | None:
    """Add the per-run segments' findings to a `verify_audit` report (None: the home has none).

    Every global checkpoint, leaf and folded segment is checked against the report's pinned
    key and the hand-overs `verify_audit` followed from it (`run_segments.verify_segments`),
    and every witnessed global checkpoint must be in the database, identical. Without a
    pinned key each global checkpoint is checked against the key it names, as `verify_audit`
    then does (the report already says it is self-consistent only)."""
    witnessed = witness_dir is not None and (witness_dir / GLOBAL_WITNESS_FILE).exists()
    if not has_segments(con) and not witnessed:
        return None
    keys = report.schedule if report.schedule is not None else KeySchedule(report.anchor)
    found = verify_segments(con, segments, keys)
    if witness_dir is not None:
        found.problems += compare_global_witness(con, witness_dir, tsa)
        if tsa is not None and not tsa.roots and any(witness_dir.glob("global-*.tsr")):
            report.notes.append(imprint_only_note("global checkpoints'"))
    report.problems.extend(Finding(None, f"segments: {p}") for p in found.problems)
    report.notes.append(
        f"{found.segments} run segments, {found.leaves} leaves, "
        f"{found.global_checkpoints} global checkpoints checked"
    )
    return found


@contextmanager
def verifying_session(paths: HitlPaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only session on the home's audit database for `verify_home`: it may attach the
    folded segments' files `readable_segments` names and nothing else (DuckDB fixes a
    database's file access when it opens it, so they are read from a first session)."""
    folded = readable_segment_files(paths.audit_db, Segments(paths.segments_dir))
    with audit_connection(paths.audit_db, read_only=True, attachable=folded) as con:
        yield con


def verify_home(
    con: duckdb.DuckDBPyConnection,
    paths: HitlPaths,
    public_key: str | TrustAnchor | None,
    *,
    lineage: bool = True,
    workers: int = 1,
    witness: Path | None = None,
    tsa: TsaCheck | None = None,
) -> VerifyReport:
    """Verify a home's audit state whole, as `hitl audit verify` does: the single chain
    (`verify.verify_audit`), with the lineage rows compared with the envelopes of the single
    chain and of every folded segment (`load_segment_events`), then the per-run segments and
    global checkpoints (`check_segments`). `verify_audit` alone knows no segment: with runs
    sealed through segments, it names every row only a segment logged as not in the log.
    `witness`: the witness folder to compare with (None: none), as for `verify_audit`."""
    segments = Segments(paths.segments_dir)
    report = verify_audit(
        con, paths.checkpoints_dir, public_key, lineage=lineage, workers=workers,
        witness=witness, more_events=lambda c: load_segment_events(c, segments), tsa=tsa,
    )  # fmt: skip
    check_segments(con, segments, report, witness, tsa)
    return report


def seal_with_segment(
    connect: OpenAttaching,
    segments: Segments,
    segment: str,
    run_id: str,
    signer: CheckpointSigner,
    checkpoints: Path,
    *,
    memory_limit: str | None = SEAL_MEMORY_LIMIT,
    witness: WitnessConfig | None = None,
    batch_rows: int = BATCH_ROWS,
    after: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
    owned: Mapping[str, OwnedKeys] = STEP_OWNED,
    scope: Scope | None = None,
    chain: bool = True,
) -> SealResult:
    """A run's end-of-run seal with its versioned rows in a segment of its own.

    On a writer connection that may attach this segment's file (and no other file of the
    folder): the insert-once tables sealed on the single chain as every seal does (step-owned
    ones refused unless their step sealed them), then the pick (step 1).
    With the global file closed: the segment's seal (step 2). On a new writer connection with
    the same allowance: the fold (step 3, reading the segment attached read-only) and `after`
    (the replica refresh). Every one of these connections works under `memory_limit`
    (`seal.memory_limited`). An insert-once row changed after sealing
    raises `SealRefused` once all of this is done, as `seal.seal_run` does (`owned`: as
    there; the benchmark passes none to log a synthetic day's executions; `scope`: the run's
    domain and days, see `pick_rows`; `chain` False: the segment's part only, for a run that
    ends before its end-of-run seal, `assets/partial_seal.py`). The returned
    result adds both parts' counts; its checkpoint is the single chain's, else the segment's.
    """
    refused: SealRefused | None = None
    sealed = SealResult(0, None)
    with claim(segments, segment):
        with (
            connect(attachable=[segments.database(segment)]) as con,  # for the pick only
            memory_limited(con, memory_limit),  # the pick's too, not only `seal_run`'s
        ):
            try:
                if chain:
                    sealed = seal_run(
                        con, run_id, signer, checkpoints, CHAIN_SOURCES, batch_rows,
                        memory_limit, witness, owned,
                    )  # fmt: skip
            except SealRefused as error:  # the rest is sealed; the segment's part follows
                refused, sealed = error, error.result
            picked = pick_rows(con, segments, segment, scope=scope)
        in_segment = seal_and_fold(
            connect, segments, picked, run_id, signer, memory_limit=memory_limit,
            witness_dir=witness.folder if witness is not None else None, after=after,
            tsa_url=witness.tsa_url if witness is not None else None, batch_rows=batch_rows,
        )  # fmt: skip
    if refused is not None:
        raise refused
    return SealResult(
        sealed.appended + in_segment.appended,
        sealed.checkpoint or in_segment.checkpoint,
        sealed.canonicalised + in_segment.canonicalised,
    )


def seal_days_through_segment(
    connect: OpenAttaching,
    segments: Segments,
    domain: str,
    days: Sequence[date],
    run_id: str,
    signer: CheckpointSigner,
    checkpoints: Path,
    *,
    memory_limit: str | None,
    witness: WitnessConfig | None = None,
    replica: Path | None = None,
    batch_rows: int = BATCH_ROWS,
    chain: bool = True,
) -> SealResult:
    """`seal_with_segment` for a run of `domain`'s `days`: its segment named after them
    (`segment_id`), its pick scoped to them, and with `replica` the auditors' replica refreshed
    after the fold, reading the folded segments in place (`chain`: as there)."""
    return seal_with_segment(
        connect,
        segments,
        segment_id(domain, list(days), run_id),
        run_id,
        signer,
        checkpoints,
        memory_limit=memory_limit,
        witness=witness,
        batch_rows=batch_rows,
        after=(
            (lambda con: refresh_replica(con, replica, segments=segments))
            if replica is not None
            else None
        ),
        scope=Scope(domain, tuple(days)),
        chain=chain,
    )

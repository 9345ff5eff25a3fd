"""Per-run segments under globally signed checkpoints: concurrent seals without one global lock.

DuckDB lets one process write a file, and while it does no other process can open it, so two
runs sealing into `audit.duckdb` always queue. A **segment** is a DuckDB file of its own
(`<root>/<segment id>.duckdb`, with the audit schema and its checkpoint files beside it in
`<segment id>.checkpoints/`): the run that owns it writes its rows there and seals them with
the ordinary seal (`seal.seal_run`), into a chain of its own that starts from the genesis hash
and is signed by the ordinary checkpoints. Runs of different domains or days own different
segments, so their seals run at the same time.

The **fold** (`fold_segments`) is the only serialised step, held for milliseconds under an
exclusive lock file: it attaches each segment read-only to the global writer's session (which
may open those files and nothing else of the folder: `core.database.attached_files`), reads its
newest checkpoint, checks its signature, appends it as a leaf to `audit_segment_leaves` in the
global database (its entries stay in the segment file, read there in place: never copied) and
signs a **global
checkpoint** (`audit_global_checkpoints`): the Merkle root (fan-out 16) of every leaf so far,
linked to the previous global checkpoint by its hash, as Certificate Transparency signs a tree
head over submissions. One leaf per segment checkpoint, not per entry.

`verify_segments` proves, with the pinned key only: every global checkpoint's signature, link
and Merkle root over the leaves; every leaf under a global checkpoint; each segment verified
whole (`verify.verify_audit`: chain, checkpoints, lineage); and every leaf still a checkpoint
of its segment, identical. Truncating a segment (its tail and checkpoints deleted), rewriting
it (even re-signed with the real key), replacing or deleting its file, or editing a leaf are
each named with the segment and leaf.

Scope (docs/audit.md, "Room to grow"): this module is the segment and fold mechanism, tested on
its own (`tests/unit/audit/test_run_segments.py`). The pipeline uses it through
`run_seal.py` (with `HITL_AUDIT_SEGMENTS` on): a run's new versioned rows are copied into its
segment under the `audit.duckdb` writer, sealed there without it, then folded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from cryptography.exceptions import InvalidSignature

from hitl_gate.audit.chain import (
    GENESIS_HASH,
    MERKLE_FANOUT,
    merkle_root_of_digests,
)
from hitl_gate.audit.events import EVENT_SOURCES, EventSource
from hitl_gate.audit.keys import public_key_from_hex, public_key_hex
from hitl_gate.audit.seal import SealResult, checkpoint_message, seal_run
from hitl_gate.audit.trust import KeySchedule
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import (
    attach_database,
    attached_files,
    audit_connection,
    create_audit_database,
    registered,
    transaction,
)
from hitl_gate.core.file_lock import exclusive_lock

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

LOCK_FILE = "segments.lock"
FOLD_ALIAS = "folded_segment"  # a segment attached read-only to the fold's session, numbered
VERIFY_SEGMENT_ALIAS = "verifying_segment"  # the segment `verify_segments` checks, attached
# Where folds before 2026-12-06 copied segment entries (schema 75). Folds copy nothing now: the
# views read the segment files in place (`run_seal.read_segments_in_place`); a copy still held
# is checked against its segment, and must be none of a segment no leaf names.
COPY_TABLE = "audit_segment_log"
LEAF_FIELDS = ("segment_id", "last_seq", "head_hash", "merkle_root", "signature")
GLOBAL_FIELDS = ("global_seq", "leaves", "tree_root", "previous_hash", "created_at", "public_key")


@dataclass(frozen=True)
class Segments:
    """Where segment files live (`<home>/segments` by convention)."""

    root: Path

    def database(self, segment_id: str) -> Path:
        if not segment_id or "/" in segment_id or segment_id.startswith("."):
            raise ValueError(f"not a segment id: {segment_id!r}")
        return self.root / f"{segment_id}.duckdb"

    def checkpoints(self, segment_id: str) -> Path:
        return self.root / f"{segment_id}.checkpoints"

    def create(self, segment_id: str) -> None:
        """The segment's database, created with the audit schema unless its file exists: as a
        copy of a schema-only one (`core.database.create_audit_database`), with no DuckDB
        instance started, else by opening it for writing."""
        database = self.database(segment_id)
        if not create_audit_database(database) and not database.is_file():
            with self.open(segment_id):
                pass

    @contextmanager
    def open(self, segment_id: str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """The segment's own database (created with the audit schema on first write)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with audit_connection(self.database(segment_id), read_only=read_only) as con:
            yield con


def seal_segment(
    segments: Segments,
    segment_id: str,
    run_id: str,
    signer: CheckpointSigner,
    sources: tuple[EventSource, ...] = EVENT_SOURCES,
    memory_limit: str | None = None,
) -> SealResult:
    """Seal a segment's new rows into its own chain: touches no file but the segment's, so
    seals of different segments run concurrently."""
    with segments.open(segment_id) as con:
        return seal_run(
            con, run_id, signer, segments.checkpoints(segment_id), sources,
            memory_limit=memory_limit,
        )  # fmt: skip


def leaf_hash(leaf: dict[str, Any]) -> bytes:
    """SHA-256 of a leaf's canonical JSON (its segment checkpoint's identifying fields)."""
    body = {name: leaf[name] for name in LEAF_FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def global_message(checkpoint: dict[str, Any]) -> bytes:
    """The signed bytes of a global checkpoint (canonical JSON of `GLOBAL_FIELDS`)."""
    body = {name: checkpoint[name] for name in GLOBAL_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def global_hash(checkpoint: dict[str, Any] | None) -> str:
    """What the next global checkpoint's `previous_hash` holds (the standalone checker's
    `bundle_check.global_hash` is the same rule)."""
    if checkpoint is None:
        return GENESIS_HASH
    return hashlib.sha256(global_message(checkpoint) + checkpoint["signature"].encode()).hexdigest()


def attach_segment(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    segment_id: str,
    alias: str,
    *,
    read_only: bool = False,
) -> None:
    """Attach the segment's file to `con` as `alias`. `con` must have been opened with that
    file among its `attachable` files (`core.database.audit_connection`), given where it is
    opened: DuckDB keeps a process's first allowance for a database file while any connection
    to it is open and cannot widen it, so a session without it is refused (`RuntimeError`,
    saying so)."""
    try:
        attach_database(con, segments.database(segment_id), alias, read_only=read_only)
    except duckdb.PermissionException as error:
        raise RuntimeError(
            f"segment {segment_id}: this audit connection may not attach the segment's file: open "
            "it with the file among its `attachable` files, with no other connection of this "
            f"process to the database open (DuckDB keeps the first one's allowance): {error}"
        ) from error


@contextmanager
def attached_segment(
    con: duckdb.DuckDBPyConnection, segments: Segments, segment_id: str, alias: str
) -> Iterator[str]:
    """The segment attached read-only as `alias` inside the block (`attach_segment`), and
    detached after it even when a statement fails: the session can read the segment's
    sealed chain and never change it."""
    attach_segment(con, segments, segment_id, alias, read_only=True)
    try:
        yield alias
    finally:
        con.execute(f"DETACH {alias}")


def file_problem(segments: Segments, segment_id: str) -> str | None:
    """Why the segment's file cannot be read (None: it can): missing, or it or a DuckDB file
    beside it a symbolic link, which whoever planted it could point at a key. Such a file is
    never opened nor allowed to a session; verify names it."""
    try:
        database = segments.database(segment_id)
    except ValueError as error:
        return f"{error} (a leaf names no segment file: edited)"
    try:
        attached_files(database)
    except ValueError as error:
        return f"{error} (its file was replaced by a link)"
    if not database.is_file():
        return "its file is missing (deleted or moved)"
    return None


def _newest_checkpoint(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, Any] | None:
    rows = con.execute(
        f"SELECT * FROM {alias}.main.audit_checkpoints ORDER BY last_seq DESC LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    return dict(zip([d[0] for d in con.description], rows[0], strict=True))


def _signature_problem(checkpoint: dict[str, Any], public_key: str) -> str | None:
    try:
        public_key_from_hex(public_key).verify(
            bytes.fromhex(checkpoint["signature"]), checkpoint_message(checkpoint)
        )
    except (InvalidSignature, ValueError):
        return f"checkpoint at seq {checkpoint['last_seq']} is not signed by the pinned key"
    return None


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rows = con.execute(sql).fetchall()
    names = [d[0] for d in con.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def fold_segments(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    segment_ids: Sequence[str],
    signer: CheckpointSigner,
) -> dict[str, Any] | None:
    """Append each segment's newest checkpoint as a leaf and sign a global checkpoint over all
    leaves (None when no segment has a new checkpoint). `con` is the global database's
    writer, opened with every segment's file (`Segments.database`) among its `attachable`
    files: the segments are attached to it read-only (`attached_segment`), so their
    checkpoints are read without another connection. No entry is copied: readers list them
    from the segment files in place (`run_seal.read_segments_in_place`, the replica).

    A segment checkpoint not signed by the signer's key is refused (`ValueError`, naming the
    segment): the fold vouches only for what the pinned key signed.
    """
    public_key = public_key_hex(signer)
    with exclusive_lock(segments.root / LOCK_FILE), ExitStack() as attached:
        new: list[tuple[str, dict[str, Any]]] = []  # (alias, leaf)
        for number, segment_id in enumerate(dict.fromkeys(segment_ids)):  # each file once
            alias = attached.enter_context(
                attached_segment(con, segments, segment_id, f"{FOLD_ALIAS}_{number}")
            )
            newest = _newest_checkpoint(con, alias)
            if newest is None:
                continue
            problem = _signature_problem(newest, public_key)
            if problem is not None:
                raise ValueError(f"segment {segment_id}: {problem}; not folded")
            known = con.execute(
                "SELECT count(*) FROM audit_segment_leaves WHERE segment_id = ? AND last_seq = ?",
                [segment_id, newest["last_seq"]],
            ).fetchall()[0][0]
            if not known:
                leaf = {"segment_id": segment_id, **{k: newest[k] for k in LEAF_FIELDS[1:]}}
                new.append((alias, leaf))
        if not new:
            return None
        with transaction(con):  # writes the global database only; the segments are read
            for _, leaf in new:
                con.execute(
                    "INSERT INTO audit_segment_leaves SELECT coalesce(max(leaf_seq), 0) + 1, "
                    "?, ?, ?, ?, ?, ? FROM audit_segment_leaves",
                    [*(leaf[k] for k in LEAF_FIELDS), leaf_hash(leaf).hex()],
                )
            hashes = [
                bytes.fromhex(h)
                for (h,) in con.execute(
                    "SELECT leaf_hash FROM audit_segment_leaves ORDER BY leaf_seq"
                ).fetchall()
            ]
            previous = _newest_global(con)
            checkpoint: dict[str, Any] = {
                "global_seq": (previous["global_seq"] + 1) if previous else 1,
                "leaves": len(hashes),
                "tree_root": merkle_root_of_digests(hashes, MERKLE_FANOUT),
                "previous_hash": global_hash(previous),
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "public_key": public_key,
            }
            checkpoint["signature"] = signer.sign(global_message(checkpoint)).hex()
            con.execute(
                "INSERT INTO audit_global_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                [checkpoint[k] for k in (*GLOBAL_FIELDS, "signature")],
            )
    return checkpoint


def _newest_global(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    rows = _rows(con, "SELECT * FROM audit_global_checkpoints ORDER BY global_seq DESC LIMIT 1")
    return rows[0] if rows else None


@dataclass
class SegmentReport:
    """What `verify_segments` found: problems (empty when everything holds) and counts."""

    problems: list[str] = field(default_factory=list)
    segments: int = 0
    leaves: int = 0
    global_checkpoints: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_segments(
    con: duckdb.DuckDBPyConnection, segments: Segments, keys: str | KeySchedule
) -> SegmentReport:
    """Check the global checkpoints, their leaves and every segment against `keys`: one
    pinned key (hex), or the key schedule `verify` follows from the pinned key through its
    signed hand-overs (`trust.key_schedule`), which names the key of each global checkpoint.

    A leaf's segment checkpoint must be signed by the key of the global checkpoint that first
    covers the leaf (the fold refuses any other), so a segment sealed with a key never handed
    over is named even when its own signatures are valid."""
    report = SegmentReport()
    leaves = _rows(con, "SELECT * FROM audit_segment_leaves ORDER BY leaf_seq")
    report.leaves = len(leaves)
    for number, leaf in enumerate(leaves, start=1):
        if leaf["leaf_seq"] != number or leaf_hash(leaf).hex() != leaf["leaf_hash"]:
            report.problems.append(
                f"leaf {leaf['leaf_seq']} (segment {leaf['segment_id']}): edited or out of order"
            )
    globals_ = _rows(con, "SELECT * FROM audit_global_checkpoints ORDER BY global_seq")
    expected = {int(g["global_seq"]): _global_key(keys, g) for g in globals_}
    _verify_globals(globals_, leaves, expected, report)
    named = sorted({leaf["segment_id"] for leaf in leaves})
    for segment_id in named:
        report.segments += 1
        mine = {
            int(leaf["last_seq"]): (leaf, _leaf_key(keys, globals_, expected, leaf))
            for leaf in leaves
            if leaf["segment_id"] == segment_id
        }
        report.problems += [
            f"segment {segment_id}: {p}" for p in _segment_problems(con, segments, segment_id, mine)
        ]
    report.problems += [
        f"{COPY_TABLE}: {n} entries of segment {s}, which no leaf names (added)"
        for s, n in con.execute(
            f"SELECT segment_id, count(*) FROM main.{COPY_TABLE} WHERE segment_id NOT IN "
            "(SELECT unnest($named::VARCHAR[])) GROUP BY ALL ORDER BY 1",
            {"named": named},
        ).fetchall()
    ]
    return report


def _global_key(keys: str | KeySchedule, checkpoint: dict[str, Any]) -> str:
    """The key that must have signed a global checkpoint: the pinned one, the one the
    hand-overs give for its `global_seq`, or (no anchor: self-consistency) the one it names."""
    if isinstance(keys, str):
        return keys
    return keys.key_for_global(int(checkpoint["global_seq"])) or str(checkpoint["public_key"])


def _leaf_key(
    keys: str | KeySchedule,
    globals_: list[dict[str, Any]],
    expected: dict[int, str],
    leaf: dict[str, Any],
) -> str | None:
    """The key of the first global checkpoint covering the leaf; when none does (the leaf is
    reported as under no global checkpoint), the key a next one would need (None: no anchor,
    the segment's own keys are checked for self-consistency only)."""
    for checkpoint in globals_:
        if int(checkpoint["leaves"]) >= int(leaf["leaf_seq"]):
            return expected[int(checkpoint["global_seq"])]
    if isinstance(keys, str):
        return keys
    return keys.key_for_global(max(expected, default=0) + 1)


def _verify_globals(
    globals_: list[dict[str, Any]],
    leaves: list[dict[str, Any]],
    expected: dict[int, str],
    report: SegmentReport,
) -> None:
    report.global_checkpoints = len(globals_)
    previous: dict[str, Any] | None = None
    for number, checkpoint in enumerate(globals_, start=1):
        where = f"global checkpoint {checkpoint['global_seq']}"
        key = expected[int(checkpoint["global_seq"])]
        try:
            if str(checkpoint["public_key"]) != key:
                raise InvalidSignature
            public_key_from_hex(key).verify(
                bytes.fromhex(checkpoint["signature"]), global_message(checkpoint)
            )
        except (InvalidSignature, ValueError):
            report.problems.append(
                f"{where}: not signed by the pinned key or its hand-overs (the key valid for "
                f"it is {key[:16]}…; it names {str(checkpoint['public_key'])[:16]}…)"
            )
        if checkpoint["global_seq"] != number or checkpoint["previous_hash"] != global_hash(
            previous
        ):
            report.problems.append(f"{where}: does not link to the global checkpoint before it")
        count = int(checkpoint["leaves"])
        hashes = [bytes.fromhex(leaf_hash(leaf).hex()) for leaf in leaves[:count]]
        if (
            count > len(leaves)
            or merkle_root_of_digests(hashes, MERKLE_FANOUT) != checkpoint["tree_root"]
        ):
            report.problems.append(
                f"{where}: its tree of {count} leaves does not match the leaves stored "
                "(a leaf edited, deleted or reordered)"
            )
        previous = checkpoint
    covered = int(previous["leaves"]) if previous else 0
    for leaf in leaves[covered:]:
        report.problems.append(
            f"leaf {leaf['leaf_seq']} (segment {leaf['segment_id']}): under no global checkpoint"
        )


def _segment_problems(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    segment_id: str,
    leaves: dict[int, tuple[dict[str, Any], str | None]],
) -> list[str]:
    """The segment verified whole, each of its leaves still one of its checkpoints, signed by
    its leaf's key, and, when an earlier fold copied its entries into the global database
    (`COPY_TABLE`), that copy exactly its entries. `leaves`: by the segment's `last_seq`, each
    leaf and the key valid for it."""
    problem = file_problem(segments, segment_id)
    if problem is not None:
        return [problem]
    problems: list[str] = []
    (copied,) = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM main.{COPY_TABLE} WHERE segment_id = ?)", [segment_id]
    ).fetchall()[0]
    entries: pa.Table | None = None
    keys = {key for _, key in leaves.values()}
    with _segment_session(con, segments, segment_id) as seg:
        # One key for the whole segment (the usual case): verify against it. Several (the
        # segment was folded before and after a hand-over): each checkpoint's own signature,
        # then its key below.
        anchor = next(iter(keys)) if len(keys) == 1 else None
        found = verify_audit(seg, segments.checkpoints(segment_id), anchor)
        problems += [f"entry {p.seq}: {p.message}" if p.seq else p.message for p in found.problems]
        stored = {int(cp["last_seq"]): cp for cp in _rows(seg, "SELECT * FROM audit_checkpoints")}
        if copied:
            entries = seg.sql(
                "SELECT seq, entry_hash, entry FROM audit_log WHERE seq <= $last",
                params={"last": max(leaves)},
            ).to_arrow_table()
    for last_seq, (leaf, key) in sorted(leaves.items()):
        cp = stored.get(last_seq)
        if cp is None or any(cp[k] != leaf[k] for k in LEAF_FIELDS[1:]):
            problems.append(
                f"leaf {leaf['leaf_seq']} (checkpoint at seq {leaf['last_seq']}, head "
                f"{str(leaf['head_hash'])[:16]}) is no longer a checkpoint of the segment: "
                "truncated or rewritten after it was folded"
            )
        elif key is not None and str(cp["public_key"]) != key:
            problems.append(
                f"checkpoint at seq {last_seq} (leaf {leaf['leaf_seq']}) is signed by "
                f"{str(cp['public_key'])[:16]}…, not the key valid for its global checkpoint "
                f"{key[:16]}… (a key never handed over)"
            )
    if entries is not None:
        problems += _copy_problems(con, segment_id, entries)
    return problems


@contextmanager
def _segment_session(
    con: duckdb.DuckDBPyConnection, segments: Segments, segment_id: str
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only session on the segment for its verification, whose unqualified names are
    the segment's.

    When `con` may attach the segment's file (verify's session: `run_seal.verifying_session`
    opens it with every folded segment's file among its `attachable` ones), the segment is
    attached read-only to it and read through a cursor of its own whose default database is
    the segment (`USE`; the cursor's temporary tables and functions are its own), under the
    same file access as `con`: no DuckDB instance is started per segment (each costs about
    15 ms of CPU, whatever the segment holds). Otherwise, or if the attach fails for any
    reason, the segment is opened on its own, read-only and with no file access, as before.
    """
    try:
        attach_segment(con, segments, segment_id, VERIFY_SEGMENT_ALIAS, read_only=True)
        attached = True
    except (RuntimeError, duckdb.Error):  # not allowed here (or unreadable): on its own
        attached = False
    if not attached:
        with segments.open(segment_id, read_only=True) as own:
            yield own
        return
    try:
        with con.cursor() as cursor:
            cursor.execute(f"USE {VERIFY_SEGMENT_ALIAS}")
            yield cursor
    finally:
        con.execute(f"DETACH {VERIFY_SEGMENT_ALIAS}")


def _copy_problems(con: duckdb.DuckDBPyConnection, segment_id: str, entries: pa.Table) -> list[str]:
    """The segment's entries as copied into `COPY_TABLE` against the segment's own (seq,
    entry_hash, entry) up to its newest leaf, which the segment's verify recomputed and
    checked against its signed checkpoints: every copied entry must be the same text with the
    same hash at the same seq, none missing, none added. (Comparing the texts costs half of
    hashing the copy again: 1.7 against 3.8 CPU s per million entries.)"""
    with registered(con, "segment_entries", entries):
        rows = con.execute(
            f"""
            SELECT coalesce(c.seq, s.seq) AS at_seq,
                   CASE WHEN c.seq IS NULL THEN 'missing from the copy'
                        WHEN s.seq IS NULL THEN 'not an entry of the segment (added)'
                        WHEN c.entry_hash <> s.entry_hash OR c.entry <> s.entry
                        THEN 'differs from the entry in the segment (edited)' END AS what
            FROM (SELECT seq, entry_hash, entry FROM main.{COPY_TABLE}
                  WHERE segment_id = $segment) c
            FULL JOIN segment_entries s ON s.seq = c.seq
            WHERE what IS NOT NULL ORDER BY at_seq LIMIT 6
            """,
            {"segment": segment_id},
        ).fetchall()
        (twice,) = con.execute(
            f"SELECT count(*) - count(DISTINCT seq) FROM main.{COPY_TABLE} WHERE segment_id = ?",
            [segment_id],
        ).fetchall()[0]
    problems = [f"{COPY_TABLE} entry seq {seq}: {what}" for seq, what in rows[:5]]
    if len(rows) > 5:
        problems.append(f"{COPY_TABLE}: more entries differ from the segment")
    if twice:
        problems.append(f"{COPY_TABLE}: {twice} entries copied twice (added)")
    return problems

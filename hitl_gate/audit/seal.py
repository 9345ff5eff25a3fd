"""Sealing a run: append its new events to the chain and sign a checkpoint of the result.

Called at the end of every pipeline run (the `audit_lineage` asset) and by CLI commands that
write lineage outside a run. Everything is swept from the lineage tables, not pushed by each
stage, so a run killed at any point loses nothing: the next seal picks up whatever the killed
run committed. The sweep is incremental: a cheap fingerprint per row (`events.source_sql`)
finds the rows whose content is new since the last seal, and only those are canonicalised and
chained, in DuckDB and in slices of about a million rows cut by key (`events.SourceSlices`; no
Python object per row but the hash loop). Each slice's entries, index rows and fingerprints
are one transaction, the checkpoint row another (a killed seal's unsigned entries are signed
by the next one); the checkpoint file outside the database is written after commit and
re-written by later seals if a crash came in between.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hitl_gate.audit.chain import (
    BINARY_FANOUT,
    GENESIS_HASH,
    MERKLE_FANOUT,
    MerkleBuilder,
    fold_packed,
    merkle_fanout,
    merkle_root_of_digests,
    sha256_function,
)
from hitl_gate.audit.events import (
    EVENT_SOURCES,
    EventSource,
    SourceSlices,
    remember,
    row_counts,
    source_sql,
    table_columns,
    unseen_counts,
)
from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.witness import WitnessConfig, publish_checkpoints
from hitl_gate.core.database import transaction
from hitl_gate.core.hashing import HASH_HEX_CHARS, hex_column

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

_T = TypeVar("_T")

BATCH_ROWS = 1_000_000  # unseen lineage rows per slice (one commit each): bounds memory
# Tables up to this many rows are first counted together for unseen rows, and swept only if
# they have some; a larger table is swept directly (counting them would hash it twice).
COUNT_FIRST_ROWS = 100_000
# DuckDB's memory limit while sealing: its cache of the blocks a seal reads and writes would
# otherwise grow with the day (1.3 GB of cached table blocks after a 3M-case day's seal).
SEAL_MEMORY_LIMIT = "1GB"
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")

# Event types whose rows only the step that writes them may log, in the connection it wrote
# them with (`execution.execute.execute_days`; verdicts and opinions: intake,
# `review.intake.sealing`): DuckDB lets one process write the file, so no one else can insert
# between that insert and that seal. Every other seal logs none of their new rows; it refuses
# them as forged (`Stray`). Passed as `owned` with no key accepted.
STEP_OWNED: Mapping[str, Collection[str]] = {
    "execution": (), "adverse_action": (), "verdict_opinion": (), "verdict": (),
}  # fmt: skip

# The entity keys a seal may log of a step-owned type: a collection of texts, an Arrow string
# array, or a check asked once per sealed slice: given the slice's entity keys, the mask of
# those the step wrote (`execution.step_keys`: a day's executions, millions of keys, held in
# the writing step's own connection instead of one array hashed again for every slice).
OwnedKeys: TypeAlias = "Collection[str] | pa.Array | Callable[[pa.ChunkedArray], pa.Array]"

CHECKPOINT_FIELDS = (
    "first_seq", "last_seq", "head_hash", "merkle_root", "run_id", "created_at", "public_key",
)  # fmt: skip


@dataclass(frozen=True)
class Clash:
    """An insert-once row whose key the log holds with another content: edited after sealing."""

    table: str
    entity_key: str
    logged_seq: int
    logged_digest: str
    row_digest: str

    def describe(self) -> str:
        return (
            f"{self.table} {self.entity_key}: insert-once record changed after it was sealed "
            f"(entry seq {self.logged_seq} logged digest {self.logged_digest[:16]}, the row now "
            f"hashes to {self.row_digest[:16]})"
        )


@dataclass(frozen=True)
class Stray:
    """A new row of a step-owned table (`STEP_OWNED`) that its writing step did not seal."""

    table: str
    entity_key: str
    row_digest: str

    def describe(self) -> str:
        return (
            f"{self.table} {self.entity_key}: not written by the step that seals this table "
            f"(row digest {self.row_digest[:16]}): inserted outside the pipeline, or left by an "
            "interrupted step (an execution: re-running its day seals it only if the step "
            "computes the same action; a verdict or opinion: see docs/audit.md)"
        )


class SealRefused(RuntimeError):
    """The seal found tampered rows and did not log them.

    Insert-once rows changed after sealing (`Clash`), and new rows of step-owned tables that
    their step did not write (`Stray`). Everything else was sealed and signed; the refused rows
    stay unlogged, and every later seal refuses again until they are restored or removed.
    There is nothing to re-seal: the log is right, the table is wrong.
    """

    def __init__(
        self, clashes: list[Clash], result: SealResult, strays: list[Stray] | None = None
    ) -> None:
        self.clashes, self.result, self.strays = clashes, result, strays or []
        found: list[Clash | Stray] = [*clashes, *self.strays]
        lines = [c.describe() for c in found[:10]]
        more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
        super().__init__(
            f"audit seal refused {len(found)} tampered rows (not logged; the rest of the run "
            f"was sealed). Restore or remove each and investigate who wrote it; `hitl audit "
            "verify` lists them:\n  " + "\n  ".join(lines) + more
        )


@dataclass(frozen=True)
class SealResult:
    """What one seal appended and the checkpoint it signed (None when nothing was new).

    `canonicalised` counts the distinct row contents that were new to the fingerprint cache,
    i.e. what this seal rendered and hashed; an identical re-run canonicalises nothing.
    """

    appended: int
    checkpoint: dict[str, Any] | None
    canonicalised: int = 0


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """The signed bytes: canonical JSON of the checkpoint fields (sorted keys, no spaces).

    `merkle_fanout` is signed whenever it is not the binary tree's 2, so checkpoints signed
    before the field existed keep their message, and no fan-out can be edited unnoticed.
    """
    body: dict[str, Any] = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    if merkle_fanout(checkpoint) != BINARY_FANOUT:
        body["merkle_fanout"] = merkle_fanout(checkpoint)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signed_checkpoint(
    first_seq: int,
    head_hash: str,
    leaves: list[bytes] | MerkleBuilder,
    run_id: str,
    created_at: str,
    signing_key: CheckpointSigner,
) -> dict[str, Any]:
    """The checkpoint of entries `first_seq`.. whose raw entry hashes are `leaves`, signed.

    `leaves` is the list of raw digests, or a `MerkleBuilder` fed with them (the sealer's
    form: no digest kept per entry).
    """
    if isinstance(leaves, MerkleBuilder):
        count, root = leaves.leaves, leaves.root()
    else:
        count, root = len(leaves), merkle_root_of_digests(leaves, MERKLE_FANOUT)
    checkpoint: dict[str, Any] = {
        "first_seq": first_seq,
        "last_seq": first_seq + count - 1,
        "head_hash": head_hash,
        "merkle_root": root,
        "merkle_fanout": MERKLE_FANOUT,
        "run_id": run_id,
        "created_at": created_at,
        "public_key": public_key_hex(signing_key),
    }
    checkpoint["signature"] = signing_key.sign(checkpoint_message(checkpoint)).hex()
    return checkpoint


def chain_head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """Last sequence number and entry hash (0 and the genesis hash for an empty log)."""
    row = con.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
    return (int(row[0][0]), str(row[0][1])) if row else (0, GENESIS_HASH)


def seal_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    signing_key: CheckpointSigner,
    checkpoint_dir: Path,
    sources: tuple[EventSource, ...] = EVENT_SOURCES,
    batch_rows: int = BATCH_ROWS,
    memory_limit: str | None = SEAL_MEMORY_LIMIT,
    witness: WitnessConfig | None = None,
    owned: Mapping[str, OwnedKeys] | None = None,
    *,
    fresh: bool = False,
) -> SealResult:
    """Append every not-yet-logged event, sign a checkpoint, write it beside the database.

    Each slice of a source table's unseen rows (about `batch_rows` rows, cut by key) is
    appended and committed in one transaction of its own, so the uncommitted data a seal holds
    in memory is one slice's, whatever the size of the day; the next slice is rendered on a
    second connection meanwhile (`_read_ahead`). A seal killed between slices leaves whole
    slices' entries without a checkpoint (`verify` notes them as not covered); the next seal's
    checkpoint starts at the first uncovered entry and its Merkle root covers them too, so
    every entry ends up under exactly one signature. `memory_limit` (DuckDB's syntax, e.g.
    "1GB"; None leaves the connection's) bounds DuckDB's cache for the seal's duration.
    `witness`: where every new checkpoint is also published outside the database and home
    (`witness.publish_checkpoints`); an insert-once row changed after sealing is not logged
    and raises `SealRefused` once the rest is sealed, signed and witnessed. `owned`: per event
    type, the entity keys this seal may log (the writing step's own rows); any other new row of
    that type is refused as a `Stray`. General seals pass `STEP_OWNED` (no key). `fresh`:
    every row of `sources` is new to this database by construction (a run's segment,
    `run_seal.seal_picked`): no fingerprint is computed or remembered and no index row is
    written or read (`events.SourceSlices`, `_Appender`).
    """
    with memory_limited(con, memory_limit):
        return _seal(
            con, run_id, signing_key, checkpoint_dir, sources, batch_rows, witness, owned or {},
            fresh,
        )  # fmt: skip


@contextmanager
def memory_limited(con: duckdb.DuckDBPyConnection, limit: str | None) -> Iterator[None]:
    """DuckDB's `memory_limit` set to `limit` for the block, then restored to the value DuckDB
    showed before (rounded to a tenth of its unit). The setting is the database instance's,
    shared by every connection to the file in this process; pipeline steps open their own.
    Without it DuckDB's limit is 80% of the machine's memory, and its cache of the blocks a
    statement reads and writes grows toward that with the size of the day (`run_seal` sets it
    on every connection of a run's seal, not only in `seal_run`)."""
    if limit is None:
        yield
        return
    if not _MEMORY.fullmatch(limit.strip()):  # SET takes no bound parameter: checked instead
        raise ValueError(f"not a DuckDB memory size: {limit!r}")
    (previous,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    con.execute(f"SET memory_limit = '{limit.strip()}'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{previous}'")


def _seal(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    signing_key: CheckpointSigner,
    checkpoint_dir: Path,
    sources: tuple[EventSource, ...],
    batch_rows: int,
    witness: WitnessConfig | None,
    owned: Mapping[str, OwnedKeys],
    fresh: bool,
) -> SealResult:
    """`seal_run` under its memory limit."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with transaction(con):
        last_seq, head = chain_head(con)
        covered_to = _sealed_to(con)
        unsigned = _entry_digests_after(con, covered_to)
        chain = _Appender(con, last_seq, head, unsigned, indexed=not fresh)
    reader = con.cursor()  # a second connection: renders the next slice while this one writes
    produced = _new_slices(reader, sources, batch_rows, run_id, now, fresh)
    ahead = _read_ahead(produced)
    clashes: list[Clash] = []
    strays: list[Stray] = []
    try:
        for source, events, fingerprints, clashed in ahead:
            clashes += _clashes(source, clashed)
            if source.event_type in owned:
                events, stray = _owned_only(events, owned[source.event_type])
                if stray.num_rows:  # remember nothing: later seals must find them again
                    strays += _strays(source, stray)
                    fingerprints = fingerprints.slice(0, 0)
            with transaction(con):
                chain.append(source.event_type, events)
                remembered = remember(con, source.event_type, fingerprints)
                chain.canonicalised += events.num_rows if fresh else remembered
    finally:  # in this order: the helper thread is done before its connection closes
        ahead.close()
        produced.close()
        reader.close()
    with transaction(con):
        checkpoint = None
        if chain.merkle.leaves:
            checkpoint = signed_checkpoint(
                covered_to + 1, chain.head, chain.merkle, run_id, now, signing_key
            )
            _insert(con, "audit_checkpoints", {k: [v] for k, v in checkpoint.items()})
        con.execute(
            "INSERT OR REPLACE INTO audit_runs VALUES (?, ?::TIMESTAMPTZ, ?)",
            [run_id, now, chain.appended],
        )
    export_checkpoints(con, checkpoint_dir)
    if witness is not None:
        publish_checkpoints(con, witness, checkpoint_message)
    result = SealResult(chain.appended, checkpoint, chain.canonicalised)
    if clashes or strays:
        raise SealRefused(clashes, result, strays)
    return result


def _owned_only(events: pa.Table, keys: OwnedKeys) -> tuple[pa.Table, pa.Table]:
    """`events` split into those whose entity key is in `keys`, and the strays, each in the
    slice's order; a key the check leaves unanswered (null) is a stray, never dropped.

    The mask is computed once and read once for its count: when every key is owned (the usual
    case) the slice itself comes back, not a filtered copy (Arrow's filter copies even an
    all-true mask, and both copies of a seal slice's rendered events, about 260 MB per 622K
    executions, stayed alive through its append). Otherwise one `take` puts the owned rows
    before the strays, and the two halves are slices of that one copy.
    """
    column = events.column("entity_key")
    if callable(keys):
        mine = keys(column)
    else:
        value_set = keys if isinstance(keys, pa.Array) else pa.array(list(keys), pa.string())
        mine = pc.is_in(column, value_set=value_set.cast(column.type))
    mine = pc.fill_null(mine, False)
    owned = pc.sum(mine).as_py() or 0
    if owned == events.num_rows:
        return events, events.slice(0, 0)
    order = pa.concat_arrays([pc.indices_nonzero(mine), pc.indices_nonzero(pc.invert(mine))])
    split = events.take(order)
    return split.slice(0, owned), split.slice(owned)


def _strays(source: EventSource, stray: pa.Table) -> list[Stray]:
    return [
        Stray(source.table, str(key), str(digest))
        for key, digest in zip(
            stray.column("entity_key").to_pylist(),
            stray.column("content_digest").to_pylist(),
            strict=True,
        )
    ]


def _clashes(source: EventSource, clashed: pa.Table) -> list[Clash]:
    return [
        Clash(source.table, r["entity_key"], int(r["logged_seq"]), r["logged_digest"],
              r["content_digest"])
        for r in clashed.to_pylist()
    ]  # fmt: skip


def _new_slices(
    reader: duckdb.DuckDBPyConnection,
    sources: tuple[EventSource, ...],
    batch_rows: int,
    run_id: str,
    recorded_at: str,
    fresh: bool = False,
) -> Generator[tuple[EventSource, pa.Table, pa.Table, pa.Table]]:
    """Per slice of unseen rows, in source order: its events, fingerprints and clashes.

    Runs on its own connection, which only reads the lineage tables and the log index (and
    keeps its temporary tables): slices are disjoint by entity and sources by event type, so
    rendering one slice never depends on the entries of the slice being written meanwhile.
    """
    with sha256_function(reader):
        columns = table_columns(reader, [source.table for source in sources])
        present = [
            (source, sql)
            for source in sources
            if (sql := source_sql(reader, source, columns=columns.get(source.table, [])))
        ]
        rows = row_counts(reader, present)
        small = [(src, sql) for src, sql in present if 0 < rows[src.event_type] <= COUNT_FIRST_ROWS]
        # A fresh seal renders every row: its unseen rows are all of them.
        unseen = rows if fresh else {**rows, **unseen_counts(reader, small)}
        for source, _ in present:
            if not unseen[source.event_type]:
                continue  # an empty table, or no row the seal has not seen
            slices = SourceSlices(reader, source, batch_rows, fresh, columns[source.table])
            try:
                for number in slices.find_unseen():
                    # One read transaction per slice: the rowids `new_events` keeps in
                    # `audit_slice` stay valid until its fingerprints are read, whatever the
                    # sealing connection commits (and checkpoints) meanwhile.
                    with transaction(reader):
                        events, clashes = slices.new_events(number, run_id, recorded_at)
                        fingerprints = slices.fingerprints()
                    yield source, events, fingerprints, clashes
            finally:
                slices.close()


def _read_ahead(items: Iterator[_T]) -> Generator[_T]:
    """`items`, the next one computed by a helper thread while the caller handles this one.

    DuckDB renders canonical JSON and envelopes without holding the GIL, so the next slice is
    read on the other core while this thread folds, inserts and commits the current one (the
    seal's two halves take about as long). One slice ahead bounds memory to two slices.
    """
    with ThreadPoolExecutor(max_workers=1) as helper:
        pending = helper.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = helper.submit(next, items, None)
            yield item


def _sealed_to(con: duckdb.DuckDBPyConnection) -> int:
    """The last sequence number under a signed checkpoint (0 when none is)."""
    return int(
        con.execute("SELECT coalesce(max(last_seq), 0) FROM audit_checkpoints").fetchall()[0][0]
    )


def _entry_digests_after(con: duckdb.DuckDBPyConnection, seq: int) -> bytes:
    """Raw entry hashes after `seq`, in order: what a killed seal appended but never signed."""
    rows = con.execute(
        "SELECT entry_hash FROM audit_log WHERE seq > ? ORDER BY seq", [seq]
    ).fetchall()
    return b"".join(bytes.fromhex(h) for (h,) in rows)


class _Appender:
    """Chains canonicalised batches onto the log inside the seal's transactions.

    Python runs only the sequential hash loop, over each batch's Arrow buffer, into one packed
    hex buffer that becomes the `entry_hash` and `prev_hash` columns without a Python string
    per entry; DuckDB builds and stores the entry texts and the index rows. The Merkle tree
    of the entries to sign is built as they come (`MerkleBuilder`), so memory does not grow
    with the day. `indexed` False (a fresh seal: a run's segment) stores no index rows: nobody
    reads a segment's index (verify, the bundle, the replica and the views read its
    `audit_log`), and its one use, keeping a digest from being logged twice, is the pick's
    fingerprints' there (`events.SourceSlices`); writing it cost ~2 CPU s per million entries.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        seq: int,
        head: str,
        unsigned: bytes,
        *,
        indexed: bool = True,
    ) -> None:
        self.con, self.seq, self.head, self.indexed = con, seq, head, indexed
        self.merkle = MerkleBuilder(MERKLE_FANOUT)
        self.merkle.add(unsigned)  # the leaves: entries left unsigned, then this seal's
        self.appended = 0  # entries this seal appended
        self.canonicalised = 0

    def append(self, event_type: str, new: pa.Table) -> None:
        """Chain, store and index a batch of events (entity_key, content_digest, body)."""
        if not new.num_rows:
            return
        hexed = fold_packed(self.head, new.column("body"))
        first = self.seq + 1
        entries = pa.table(
            {
                "seq": pa.array(np.arange(first, first + new.num_rows, dtype=np.int64)),
                "entry_hash": hex_column(hexed),
                "prev_hash": hex_column(self.head.encode("ascii") + hexed[:-HASH_HEX_CHARS]),
                "body": new.column("body"),
                "entity_key": new.column("entity_key"),
                "content_digest": new.column("content_digest"),
            }
        )
        self._run(
            "INSERT INTO audit_log SELECT seq, entry_hash, prev_hash || '|' || body "
            "FROM incoming_events",
            [],
            entries,
        )
        if self.indexed:
            self._run(
                "INSERT INTO audit_log_index SELECT ?, entity_key, content_digest, seq "
                "FROM incoming_events",
                [event_type],
                entries,
            )
        self.seq += new.num_rows
        self.head = hexed[-HASH_HEX_CHARS:].decode("ascii")
        self.merkle.add_hex(hexed)
        self.appended += new.num_rows

    def _run(self, sql: str, params: list, table: pa.Table) -> None:
        self.con.register("incoming_events", table)
        try:
            self.con.execute(sql, params)
        finally:
            self.con.unregister("incoming_events")


def checkpoint_file(checkpoint_dir: Path, last_seq: int) -> Path:
    return checkpoint_dir / f"checkpoint-{last_seq:012d}.json"


def export_checkpoints(con: duckdb.DuckDBPyConnection, checkpoint_dir: Path) -> int:
    """Write every database checkpoint that has no file yet (atomic rename); return how many."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    rows = con.execute("SELECT * FROM audit_checkpoints ORDER BY last_seq").fetchall()
    names = [d[0] for d in con.description]
    written = 0
    for row in rows:
        record = dict(zip(names, row, strict=True))
        target = checkpoint_file(checkpoint_dir, int(record["last_seq"]))
        if target.exists():
            continue
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        written += 1
    return written


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, list]) -> None:
    con.register("incoming_audit", pa.table(columns))
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_audit")
    finally:
        con.unregister("incoming_audit")

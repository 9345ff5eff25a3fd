"""Sealing a run: append its new events to the chain and sign a checkpoint of the result.

Called at the end of every pipeline run (the `audit_lineage` asset) and by CLI commands that
write lineage outside a run. Everything is swept from the lineage tables, not pushed by each
stage, so a run killed at any point loses nothing: the next seal picks up whatever the killed
run committed. The sweep is incremental: a cheap fingerprint per row (`events.source_sql`)
finds the rows whose content is new since the last seal, and only those are canonicalised and
chained, in DuckDB and in batches (no Python object per row but the hash loop). Each source
table's entries and index rows are one transaction, the checkpoint row another (a killed seal's
unsigned entries are signed by the next one); the checkpoint file outside the database is
written after commit and re-written by later seals if a crash came in between.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from hitl_gate.audit.chain import (
    BINARY_FANOUT,
    GENESIS_HASH,
    MERKLE_FANOUT,
    fold_bodies,
    merkle_fanout,
    merkle_root_of_digests,
    sha256_function,
)
from hitl_gate.audit.events import EVENT_SOURCES, EventSource, SourceSlices
from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.store import transaction

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

BATCH_ROWS = 200_000  # lineage rows read per step: bounds memory, barely affects speed

CHECKPOINT_FIELDS = (
    "first_seq", "last_seq", "head_hash", "merkle_root", "run_id", "created_at", "public_key",
)  # fmt: skip


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
    leaves: list[bytes],
    run_id: str,
    created_at: str,
    signing_key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """The checkpoint of entries `first_seq`.. whose raw entry hashes are `leaves`, signed."""
    checkpoint: dict[str, Any] = {
        "first_seq": first_seq,
        "last_seq": first_seq + len(leaves) - 1,
        "head_hash": head_hash,
        "merkle_root": merkle_root_of_digests(leaves, MERKLE_FANOUT),
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
    signing_key: Ed25519PrivateKey,
    checkpoint_dir: Path,
    sources: tuple[EventSource, ...] = EVENT_SOURCES,
    batch_rows: int = BATCH_ROWS,
) -> SealResult:
    """Append every not-yet-logged event, sign a checkpoint, write it beside the database.

    Each source table's events are appended and committed in one transaction of their own (its
    rowid slices stay valid inside it), so the uncommitted data a seal holds in memory is one
    table's, not the day's: at a million cases that is about 0.8 GB less at the peak. A seal
    killed between tables leaves whole tables' entries without a checkpoint (`verify` notes
    them as not covered); the next seal's checkpoint starts at the first uncovered entry and
    its Merkle root covers them too, so every entry ends up under exactly one signature.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with transaction(con):
        last_seq, head = chain_head(con)
        covered_to = _sealed_to(con)
        chain = _Appender(con, last_seq, head, _entry_digests_after(con, covered_to))
    with sha256_function(con):
        for source in sources:
            with transaction(con):
                slices = SourceSlices(con, source, batch_rows)
                for lo, hi in slices.find_unseen():
                    chain.append(source.event_type, slices.new_events(lo, hi, run_id, now))
                chain.canonicalised += slices.remember()
    with transaction(con):
        checkpoint = None
        if chain.digests:
            checkpoint = signed_checkpoint(
                covered_to + 1, chain.head, chain.digests, run_id, now, signing_key
            )
            _insert(con, "audit_checkpoints", {k: [v] for k, v in checkpoint.items()})
        con.execute(
            "INSERT OR REPLACE INTO audit_runs VALUES (?, ?::TIMESTAMPTZ, ?)",
            [run_id, now, chain.appended],
        )
    export_checkpoints(con, checkpoint_dir)
    return SealResult(chain.appended, checkpoint, chain.canonicalised)


def _sealed_to(con: duckdb.DuckDBPyConnection) -> int:
    """The last sequence number under a signed checkpoint (0 when none is)."""
    return int(
        con.execute("SELECT coalesce(max(last_seq), 0) FROM audit_checkpoints").fetchall()[0][0]
    )


def _entry_digests_after(con: duckdb.DuckDBPyConnection, seq: int) -> list[bytes]:
    """Raw entry hashes after `seq`, in order: what a killed seal appended but never signed."""
    rows = con.execute(
        "SELECT entry_hash FROM audit_log WHERE seq > ? ORDER BY seq", [seq]
    ).fetchall()
    return [bytes.fromhex(h) for (h,) in rows]


class _Appender:
    """Chains canonicalised batches onto the log inside the seal's transactions.

    Python runs only the sequential hash loop, over each batch's Arrow buffer; DuckDB builds
    and stores the entry texts, the index rows and the fingerprints.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, seq: int, head: str, unsigned: list[bytes]
    ) -> None:
        self.con, self.seq, self.head = con, seq, head
        self.digests = unsigned  # the Merkle leaves: entries left unsigned, then this seal's
        self.appended = 0  # entries this seal appended
        self.canonicalised = 0

    def append(self, event_type: str, new: pa.Table) -> None:
        """Chain, store and index a batch of events (entity_key, content_digest, body)."""
        if not new.num_rows:
            return
        hashes, raws = fold_bodies(self.head, new.column("body"))
        first = self.seq + 1
        entries = pa.table(
            {
                "seq": pa.array(range(first, first + new.num_rows), pa.int64()),
                "entry_hash": pa.array(hashes, pa.string()),
                "prev_hash": pa.array([self.head, *hashes[:-1]], pa.string()),
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
        self._run(
            "INSERT INTO audit_log_index SELECT ?, entity_key, content_digest, seq "
            "FROM incoming_events",
            [event_type],
            entries,
        )
        self.seq += new.num_rows
        self.head = hashes[-1]
        self.digests.extend(raws)
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

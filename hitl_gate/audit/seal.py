"""Sealing a run: append its new events to the chain and sign a checkpoint of the result.

Called at the end of every pipeline run (the `audit_lineage` asset) and by CLI commands that
write lineage outside a run. Everything is swept from the lineage tables, not pushed by each
stage, so a run killed at any point loses nothing: the next seal picks up whatever the killed
run committed. Appending entries, the index and the checkpoint row is one transaction; the
checkpoint file outside the database is written after commit and re-written by later seals if
a crash came in between.
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

from hitl_gate.audit.chain import GENESIS_HASH, envelope, fold_chain, merkle_root
from hitl_gate.audit.events import EVENT_SOURCES, EventSource, new_events
from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.store import transaction

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CHECKPOINT_FIELDS = (
    "first_seq", "last_seq", "head_hash", "merkle_root", "run_id", "created_at", "public_key",
)  # fmt: skip


@dataclass(frozen=True)
class SealResult:
    """What one seal appended and the checkpoint it signed (None when nothing was new)."""

    appended: int
    checkpoint: dict[str, Any] | None


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """The signed bytes: canonical JSON of the checkpoint fields (sorted keys, no spaces)."""
    body = {name: checkpoint[name] for name in CHECKPOINT_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


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
) -> SealResult:
    """Append every not-yet-logged event, sign a checkpoint, write it beside the database."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with transaction(con):
        events = new_events(con, sources)
        last_seq, head = chain_head(con)
        checkpoint = None
        if events:
            bodies = (envelope(e, run_id, now) for e in events)
            entries, hashes = fold_chain(head, bodies)
            first = last_seq + 1
            seqs = list(range(first, first + len(entries)))
            _insert(con, "audit_log", {"seq": seqs, "entry_hash": hashes, "entry": entries})
            _insert(
                con,
                "audit_log_index",
                {
                    "event_type": [e.event_type for e in events],
                    "entity_key": [e.entity_key for e in events],
                    "content_digest": [e.content_digest for e in events],
                    "seq": seqs,
                },
            )
            checkpoint = {
                "first_seq": first,
                "last_seq": seqs[-1],
                "head_hash": hashes[-1],
                "merkle_root": merkle_root(hashes),
                "run_id": run_id,
                "created_at": now,
                "public_key": public_key_hex(signing_key),
            }
            checkpoint["signature"] = signing_key.sign(checkpoint_message(checkpoint)).hex()
            _insert(con, "audit_checkpoints", {k: [v] for k, v in checkpoint.items()})
        con.execute(
            "INSERT OR REPLACE INTO audit_runs VALUES (?, ?::TIMESTAMPTZ, ?)",
            [run_id, now, len(events)],
        )
    export_checkpoints(con, checkpoint_dir)
    return SealResult(appended=len(events), checkpoint=checkpoint)


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

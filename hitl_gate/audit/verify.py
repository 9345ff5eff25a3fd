"""`hitl audit verify`: recompute the whole chain and every checkpoint, name the first break.

The log is streamed in sequence order in large Arrow batches. Per batch, every entry's SHA-256
is recomputed straight from the Arrow string buffer (OpenSSL's SHA-256, one C call per entry, no
Python string objects), and the sequence, stored hashes and links are compared as whole
columns. Checkpoints are read from the database and from the files written beside it: a file
whose checkpoint is missing from the database, or that points past the end of the log, means
the database was rolled back or its tail deleted.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hitl_gate.audit.chain import GENESIS_HASH, merkle_root_of_digests
from hitl_gate.audit.events import EVENT_SOURCES, new_events
from hitl_gate.audit.seal import CHECKPOINT_FIELDS, checkpoint_message

BATCH_ROWS = 1_000_000


@dataclass(frozen=True)
class Finding:
    """One broken thing, anchored at a sequence number when it concerns an entry."""

    seq: int | None
    message: str


@dataclass
class VerifyReport:
    """The outcome of a verification: entries and checkpoints checked, problems, notes."""

    entries: int = 0
    checkpoints: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> Finding | None:
        anchored = [p for p in self.problems if p.seq is not None]
        return min(anchored, key=lambda p: p.seq) if anchored else None

    def summary(self) -> str:
        lines = [
            f"audit log: {self.entries} entries, {self.checkpoints} checkpoints: "
            + ("OK" if self.ok else f"BROKEN ({len(self.problems)} problems)")
        ]
        first = self.first_broken
        if first is not None:
            lines.append(f"first broken entry: seq {first.seq}: {first.message}")
        lines += [f"  problem: {p.message}" for p in self.problems[:20]]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify_audit(
    con: duckdb.DuckDBPyConnection,
    checkpoint_dir: Path,
    public_key: str | None,
    *,
    lineage: bool = True,
    batch_rows: int = BATCH_ROWS,
) -> VerifyReport:
    """Check the chain, every checkpoint (database and files) and, optionally, the lineage."""
    report = VerifyReport()
    checkpoints = _load_checkpoints(con, checkpoint_dir, public_key, report)
    report.checkpoints = len(checkpoints)
    last_seq = _verify_chain(con, checkpoints, report, batch_rows)
    report.entries = last_seq
    for cp in checkpoints:
        if cp["last_seq"] > last_seq:
            report.problems.append(
                Finding(
                    last_seq + 1,
                    f"log ends at seq {last_seq} but checkpoint {cp['last_seq']} (run "
                    f"{cp['run_id']}) was signed: the tail of the log was deleted",
                )
            )
    sealed_to = max((cp["last_seq"] for cp in checkpoints), default=0)
    if last_seq > sealed_to:
        report.notes.append(f"entries {sealed_to + 1}..{last_seq} are not covered by a checkpoint")
    if lineage:
        _verify_lineage(con, report)
    return report


def _load_checkpoints(
    con: duckdb.DuckDBPyConnection, folder: Path, public_key: str | None, report: VerifyReport
) -> list[dict[str, Any]]:
    """Union of database and file checkpoints, each signature checked, by `last_seq`."""
    from hitl_gate.audit.keys import public_key_from_hex

    rows = con.execute("SELECT * FROM audit_checkpoints ORDER BY last_seq").fetchall()
    names = [d[0] for d in con.description]
    in_db = {int(r[names.index("last_seq")]): dict(zip(names, r, strict=True)) for r in rows}
    on_disk: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("checkpoint-*.json")) if folder.exists() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            on_disk[int(record["last_seq"])] = record
        except (ValueError, KeyError) as exc:
            report.problems.append(Finding(None, f"{path}: unreadable checkpoint ({exc})"))
    for seq, record in on_disk.items():
        db = in_db.get(seq)
        if db is None:
            report.problems.append(
                Finding(seq, f"checkpoint file for seq {seq} has no database row (deleted)")
            )
        elif any(str(db[k]) != str(record.get(k)) for k in (*CHECKPOINT_FIELDS, "signature")):
            report.problems.append(Finding(seq, f"checkpoint {seq}: file and database differ"))
    for seq in in_db.keys() - on_disk.keys():
        report.notes.append(f"checkpoint {seq} has no file yet (written by the next seal)")
    merged = {**in_db, **on_disk}
    checkpoints = [merged[s] for s in sorted(merged)]
    for cp in checkpoints:
        key_hex = public_key or cp["public_key"]
        if public_key and cp["public_key"] != public_key:
            report.problems.append(
                Finding(cp["last_seq"], f"checkpoint {cp['last_seq']} signed by another key")
            )
        try:
            public_key_from_hex(key_hex).verify(
                bytes.fromhex(cp["signature"]), checkpoint_message(cp)
            )
        except Exception:  # cryptography raises InvalidSignature or ValueError
            report.problems.append(
                Finding(cp["last_seq"], f"checkpoint {cp['last_seq']}: bad signature")
            )
    return checkpoints


LOG_SCAN = (
    "SELECT seq, try(unhex(entry_hash)) AS stored, "
    "try(unhex(substr(entry, 1, 64))) AS embedded_prev, entry FROM audit_log"
)


def _batches(
    con: duckdb.DuckDBPyConnection, batch_rows: int, ordered: bool
) -> Iterator[pa.RecordBatch]:
    """The log in storage order (fast path: insertion order is sequence order) or sorted."""
    sql = LOG_SCAN + (" ORDER BY seq" if ordered else "")
    yield from con.sql(sql).to_arrow_reader(batch_rows)


def _entry_digests(entries: pa.Array) -> list[bytes]:
    """Raw SHA-256 of each string of an Arrow string array, read from its buffers."""
    if entries.null_count:
        entries = pc.fill_null(entries, "")
    if not pa.types.is_large_string(entries.type):
        entries = entries.cast(pa.large_string())
    _, offsets_buf, data_buf = entries.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[
        entries.offset : entries.offset + len(entries) + 1
    ].tolist()
    data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    sha = hashlib.sha256
    return [sha(data[a:b]).digest() for a, b in zip(offsets, offsets[1:], strict=False)]


def _first_false(mask: pa.Array) -> int | None:
    bad = np.flatnonzero(~np.asarray(pc.fill_null(mask, False)))
    return int(bad[0]) if bad.size else None


def _verify_chain(
    con: duckdb.DuckDBPyConnection,
    checkpoints: list[dict[str, Any]],
    report: VerifyReport,
    batch_rows: int,
) -> int:
    """Stream the log; return the last sequence number seen (0 when empty).

    Storage order is tried first (no sort); if any row is out of sequence there, the log is
    re-read sorted by `seq` so the report names entries by their sequence numbers.
    """
    for ordered in (False, True):
        attempt = VerifyReport()
        last = _scan_chain(con, checkpoints, attempt, batch_rows, ordered)
        out_of_order = any(p.message.startswith(OUT_OF_PLACE) for p in attempt.problems)
        if ordered or not out_of_order:
            report.problems.extend(attempt.problems)
            return last
    return last  # unreachable: the sorted pass always returns


OUT_OF_PLACE = "sequence number out of place"


def _scan_chain(
    con: duckdb.DuckDBPyConnection,
    checkpoints: list[dict[str, Any]],
    report: VerifyReport,
    batch_rows: int,
    ordered: bool,
) -> int:
    ranges = _CheckpointRanges(checkpoints, report)
    prev = bytes.fromhex(GENESIS_HASH)
    expected_seq = 1
    for batch in _batches(con, batch_rows, ordered):
        n = batch.num_rows
        seqs = batch.column("seq").to_numpy(zero_copy_only=False)
        computed = _entry_digests(batch.column("entry"))
        computed_arr = pa.array(computed, pa.binary())
        findings: list[tuple[int | None, str]] = []
        out_of_place = np.flatnonzero(seqs != np.arange(expected_seq, expected_seq + n))
        if out_of_place.size:
            findings.append((int(out_of_place[0]), f"{OUT_OF_PLACE} (a row was deleted, "
                             "inserted or reordered)"))  # fmt: skip
        stored = batch.column("stored").cast(pa.binary())
        findings.append((_first_false(pc.equal(computed_arr, stored)),
                         "entry hash does not match its content (altered)"))  # fmt: skip
        links = pa.concat_arrays([pa.array([prev], pa.binary()), computed_arr.slice(0, n - 1)])
        embedded = batch.column("embedded_prev").cast(pa.binary())
        findings.append((_first_false(pc.equal(embedded, links)),
                         "link to the previous entry is broken (the entry before it was "
                         "changed, removed or moved)"))  # fmt: skip
        for pos, message in findings:
            if pos is not None:
                report.problems.append(Finding(int(seqs[pos]), message))
        if not out_of_place.size:
            ranges.feed(expected_seq, computed)
        prev = computed[-1] if n else prev
        expected_seq += n
    return expected_seq - 1


class _CheckpointRanges:
    """Follows the checkpoint ranges while batches stream by: head hash and Merkle root each."""

    def __init__(self, checkpoints: list[dict[str, Any]], report: VerifyReport) -> None:
        self.by_end = {int(cp["last_seq"]): cp for cp in checkpoints}
        self.by_start = {int(cp["first_seq"]): cp for cp in checkpoints}
        self.marks = sorted(set(self.by_end) | set(self.by_start))
        self.report = report
        self.leaves: list[bytes] | None = None

    def feed(self, first_seq: int, hashes: list[bytes]) -> None:
        """Consume the entry hashes of seqs first_seq.. (consecutive)."""
        last_seq = first_seq + len(hashes) - 1
        lo = bisect_left(self.marks, first_seq)
        hi = bisect_right(self.marks, last_seq)
        cursor = 0
        for seq in self.marks[lo:hi]:
            pos = seq - first_seq
            if seq in self.by_start:
                self.leaves = []
                cursor = pos
            if seq in self.by_end:
                self._close(seq, hashes[pos], hashes[cursor : pos + 1])
                cursor = pos + 1
        if self.leaves is not None:
            self.leaves.extend(hashes[cursor:])

    def _close(self, seq: int, head: bytes, tail: list[bytes]) -> None:
        cp = self.by_end[seq]
        if head.hex() != cp["head_hash"]:
            self.report.problems.append(Finding(seq, f"checkpoint {seq}: head hash differs"))
        if self.leaves is not None:
            self.leaves.extend(tail)
            if merkle_root_of_digests(self.leaves) != cp["merkle_root"]:
                self.report.problems.append(Finding(seq, f"checkpoint {seq}: Merkle root differs"))
        self.leaves = None


def _verify_lineage(con: duckdb.DuckDBPyConnection, report: VerifyReport) -> None:
    """Lineage rows whose current content was never logged: changed after the fact, or unsealed."""
    pending = new_events(con, EVENT_SOURCES)
    if pending:
        first = pending[0]
        report.problems.append(
            Finding(
                None,
                f"{len(pending)} lineage rows differ from the audit log (edited after logging, "
                f"or a run was interrupted before sealing: run `hitl audit seal`); first: "
                f"{first.event_type} {first.entity_key}",
            )
        )

"""Verifying one segment of the audit log: the unit `hitl audit verify` spreads over processes.

A segment is a range of sequence numbers `lo..hi` plus the stored hash of entry `lo - 1`. Its
entries are streamed in large Arrow batches; every entry's SHA-256 is recomputed straight
from the Arrow string buffer (OpenSSL, one C call per entry, no Python string objects), and
the sequence, stored hashes and links are compared as whole columns. The checkpoints that lie
inside the segment get their head hash and Merkle root checked on the way. Segments that
split the log at checkpoint boundaries are independent: `verify` runs one in its own process
and the others in child processes (`python -m hitl_gate.audit.segments JOB.json`, result as
JSON on stdout), then checks the joins. This module imports only what that child needs.
"""

from __future__ import annotations

import json
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hitl_gate.audit.chain import GENESIS_HASH, merkle_root_of_digests, sha256_digests

OUT_OF_PLACE = "sequence number out of place"
LOG_SCAN = (
    "SELECT seq, try(unhex(entry_hash)) AS stored, "
    "try(unhex(substr(entry, 1, 64))) AS embedded_prev, entry FROM audit_log"
)


@dataclass
class SegmentResult:
    """What one segment scan found: problems as (seq, message), and where it ended."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    last_seq: int = 0  # sequence number the scan reached (lo - 1 when it read nothing)
    out_of_place: bool = False  # a row was missing, extra or out of order: re-scan sorted


def scan_segment(
    con: duckdb.DuckDBPyConnection,
    checkpoints: list[dict[str, Any]],
    batch_rows: int,
    *,
    lo: int = 1,
    hi: int | None = None,
    prev_hex: str = GENESIS_HASH,
    ordered: bool = False,
) -> SegmentResult:
    """Check entries `lo..hi` (to the end when `hi` is None) after the hash `prev_hex`.

    Storage order is read by default (the fast path: insertion order is sequence order);
    `ordered` sorts by `seq`, which the caller asks for once a scan reported rows out of place.
    """
    result = SegmentResult(last_seq=lo - 1)
    ranges = _CheckpointRanges(checkpoints, result.problems)
    prev = _unhex(prev_hex)
    expected_seq = lo
    for batch in _batches(con, batch_rows, ordered, lo, hi):
        n = batch.num_rows
        seqs = batch.column("seq").to_numpy(zero_copy_only=False)
        computed = sha256_digests(batch.column("entry"))
        computed_arr = pa.array(computed, pa.binary())
        findings: list[tuple[int | None, str]] = []
        out_of_place = np.flatnonzero(seqs != np.arange(expected_seq, expected_seq + n))
        if out_of_place.size:
            result.out_of_place = True
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
                result.problems.append((int(seqs[pos]), message))
        if not out_of_place.size:
            ranges.feed(expected_seq, computed)
        prev = computed[-1] if n else prev
        expected_seq += n
    result.last_seq = expected_seq - 1
    if hi is not None and result.last_seq != hi:
        result.out_of_place = True  # rows of the range are missing
    return result


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""  # a malformed stored hash: the link check of the next entry fails


def _batches(
    con: duckdb.DuckDBPyConnection, batch_rows: int, ordered: bool, lo: int, hi: int | None
) -> Iterator[pa.RecordBatch]:
    """The segment's rows in storage order, or sorted by `seq`."""
    if hi is None and lo == 1:
        sql, params = LOG_SCAN, []
    else:
        sql, params = LOG_SCAN + " WHERE seq BETWEEN ? AND ?", [lo, hi]
    sql += " ORDER BY seq" if ordered else ""
    yield from con.sql(sql, params=params).to_arrow_reader(batch_rows)


def _first_false(mask: pa.Array) -> int | None:
    bad = np.flatnonzero(~np.asarray(pc.fill_null(mask, False)))
    return int(bad[0]) if bad.size else None


class _CheckpointRanges:
    """Follows the checkpoint ranges while batches stream by: head hash and Merkle root each."""

    def __init__(self, checkpoints: list[dict[str, Any]], problems: list[tuple[int, str]]) -> None:
        self.by_end = {int(cp["last_seq"]): cp for cp in checkpoints}
        self.by_start = {int(cp["first_seq"]): cp for cp in checkpoints}
        self.marks = sorted(set(self.by_end) | set(self.by_start))
        self.problems = problems
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
            self.problems.append((seq, f"checkpoint {seq}: head hash differs"))
        if self.leaves is not None:
            self.leaves.extend(tail)
            if merkle_root_of_digests(self.leaves) != cp["merkle_root"]:
                self.problems.append((seq, f"checkpoint {seq}: Merkle root differs"))
        self.leaves = None


def main() -> None:
    """Child process: one segment described by the JSON file named by argv; result to stdout."""
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    con = duckdb.connect(job["database"], read_only=True)
    try:
        result = scan_segment(
            con, job["checkpoints"], job["batch_rows"],
            lo=job["lo"], hi=job["hi"], prev_hex=job["prev_hex"],
        )  # fmt: skip
    finally:
        con.close()
    json.dump(asdict(result), sys.stdout)


if __name__ == "__main__":
    main()

"""Verifying one segment of the audit log: the unit `hitl audit verify` spreads over processes.

A segment is a range of sequence numbers `lo..hi` plus the stored hash of entry `lo - 1`. Its
entries are streamed in large Arrow batches; every entry's SHA-256 is recomputed straight
from the Arrow string buffer (OpenSSL, one C call per entry, no Python string objects), and
the sequence, stored hashes and links are compared as whole columns. The checkpoints that lie
inside the segment get their head hash and Merkle root checked on the way. Segments that
split the log at checkpoint boundaries are independent: `verify` runs one in its own process
and the others in child processes (`python -m hitl_gate.audit.segments JOB.json`, result as
JSON on stdout), then checks the joins. This module imports only what that child needs.

The child opens the database read-only with DuckDB's file access off from the start
(`enable_external_access` false: it reads nothing but the database file), so a view planted in
place of `audit_log` by whoever writes the file cannot `read_blob` the home's secrets into a
verify report.
"""

from __future__ import annotations

import json
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hitl_gate.audit.chain import (
    GENESIS_HASH,
    merkle_fanout,
    merkle_root_of_packed,
)
from hitl_gate.core.hashing import sha256_packed
from hitl_gate.core.quiet_duckdb import quiet_connect

OUT_OF_PLACE = "sequence number out of place"
DIGEST_BYTES = 32
LOG_SCAN = "SELECT seq, entry_hash, substr(entry, 1, 64) AS embedded_prev, entry FROM audit_log"
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


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
    Hashes are compared as (n, 4) uint64 matrices of packed digests: one numpy comparison per
    batch instead of an Arrow array of 32-byte objects built per entry.
    """
    result = SegmentResult(last_seq=lo - 1)
    ranges = _CheckpointRanges(checkpoints, result.problems)
    prev_row, prev_ok = _text_row(prev_hex)
    expected_seq = lo
    for batch in _prefetched(_batches(con, batch_rows, ordered, lo, hi)):
        n = batch.num_rows
        if not n:
            continue
        seqs = _integers(batch.column("seq"))
        packed = sha256_packed(batch.column("entry"))
        computed = _hex_of_packed(packed, n)
        findings: list[tuple[int | None, str]] = []
        out_of_place = np.flatnonzero(seqs != np.arange(expected_seq, expected_seq + n))
        if out_of_place.size:
            result.out_of_place = True
            findings.append((int(out_of_place[0]), f"{OUT_OF_PLACE} (a row was deleted, "
                             "inserted or reordered)"))  # fmt: skip
        stored, stored_ok = _text_rows(batch.column("entry_hash"))
        findings.append((_first(~stored_ok | (computed != stored).any(axis=1)),
                         "entry hash does not match its content (altered)"))  # fmt: skip
        embedded, embedded_ok = _text_rows(batch.column("embedded_prev"))
        links = np.concatenate([prev_row, computed[:-1]])
        links_ok = np.concatenate([prev_ok, np.ones(n - 1, bool)])
        findings.append((_first(~embedded_ok | ~links_ok | (embedded != links).any(axis=1)),
                         "link to the previous entry is broken (the entry before it was "
                         "changed, removed or moved)"))  # fmt: skip
        for pos, message in findings:
            if pos is not None:
                result.problems.append((int(seqs[pos]), message))
        if not out_of_place.size:
            ranges.feed(expected_seq, packed)
        prev_row, prev_ok = computed[-1:], np.ones(1, bool)
        expected_seq += n
    result.last_seq = expected_seq - 1
    if hi is not None and result.last_seq != hi:
        result.out_of_place = True  # rows of the range are missing
    return result


def _hex_of_packed(packed: bytes, n: int) -> np.ndarray:
    """Lower-case hex of n packed digests as an (n, 8) uint64 matrix (64 ASCII bytes a row).

    Hashes are compared as the text the log stores, so DuckDB need not `unhex` two columns
    per entry (a third of its scan time); numpy encodes a batch of digests in one pass.
    """
    raw = np.frombuffer(packed, np.uint8).reshape(n, DIGEST_BYTES)
    text = np.empty((n, 2 * DIGEST_BYTES), np.uint8)
    text[:, 0::2] = HEX_DIGITS[raw >> 4]
    text[:, 1::2] = HEX_DIGITS[raw & 15]
    return text.view(np.uint64)


def _text_row(text: str) -> tuple[np.ndarray, np.ndarray]:
    """`_text_rows` of one text, its Arrow array made from its bytes (`pa.array([text])` has
    pyarrow import pandas, see `_integers`)."""
    data = text.encode("utf-8")
    offsets = np.array([0, len(data)], np.int32)
    return _text_rows(pa.StringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data)))


def _integers(column: pa.Array) -> np.ndarray:
    """An integer column as a numpy array, read from its value buffer when it holds no null.

    pyarrow's conversions (`to_numpy`, `pa.array`, `pa.scalar`) import pandas to ask whether
    a value is a pandas object: about half of what a segment process (`main`) spent, which
    never has one. A column with nulls (a null is NaN, equal to no number) or of another type
    (a log whose table was rebuilt) is converted as before.
    """
    if column.null_count or not pa.types.is_signed_integer(column.type):
        return column.to_numpy(zero_copy_only=False)
    values = np.frombuffer(column.buffers()[1], np.dtype(f"int{column.type.bit_width}"))
    return values[column.offset : column.offset + len(column)]


def _text_rows(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A column of 64-character hashes as an (n, 8) uint64 matrix, and which rows are valid.

    Zero-copy from the Arrow buffer when every value has 64 bytes (the normal case). A null or
    a value of another length is marked invalid, so it fails its comparison whatever its
    placeholder row holds. Upper-case hex is not equal to the lower case the writer stores:
    such an edit is reported as a change, as it is one.
    """
    width = 2 * DIGEST_BYTES
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())  # e.g. string_view
    n = len(column)
    valid = _integers(pc.binary_length(column)) == width  # a null's length: NaN, not the width
    if not valid.all():
        column = pc.if_else(pa.array(valid), column, pa.scalar("-" * width, column.type))
    offset_type = np.int64 if pa.types.is_large_string(column.type) else np.int32
    offsets = np.frombuffer(column.buffers()[1], offset_type)[column.offset : column.offset + n + 1]
    data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(n, width).view(np.uint64), valid


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


def _prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`batches`, the next one read by a helper thread while the caller hashes this one.

    DuckDB decompresses and unhexes without holding the GIL, so the scan of batch k + 1 runs
    on the other core while Python hashes batch k. One batch ahead bounds memory to two.
    """
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = reader.submit(next, batches, None)
            yield batch


def _first(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


class _CheckpointRanges:
    """Follows the checkpoint ranges while batches stream by: head hash and Merkle root each."""

    def __init__(self, checkpoints: list[dict[str, Any]], problems: list[tuple[int, str]]) -> None:
        self.by_end = {int(cp["last_seq"]): cp for cp in checkpoints}
        self.by_start = {int(cp["first_seq"]): cp for cp in checkpoints}
        self.marks = sorted(set(self.by_end) | set(self.by_start))
        self.problems = problems
        self.leaves: bytearray | None = None

    def feed(self, first_seq: int, packed: bytes) -> None:
        """Consume the packed entry digests of seqs first_seq.. (consecutive)."""
        last_seq = first_seq + len(packed) // DIGEST_BYTES - 1
        lo = bisect_left(self.marks, first_seq)
        hi = bisect_right(self.marks, last_seq)
        cursor = 0
        for seq in self.marks[lo:hi]:
            pos = seq - first_seq
            if seq in self.by_start:
                self.leaves = bytearray()
                cursor = pos
            if seq in self.by_end:
                end = (pos + 1) * DIGEST_BYTES
                self._close(
                    seq, packed[end - DIGEST_BYTES : end], packed[cursor * DIGEST_BYTES : end]
                )
                cursor = pos + 1
        if self.leaves is not None:
            self.leaves += packed[cursor * DIGEST_BYTES :]

    def _close(self, seq: int, head: bytes, tail: bytes) -> None:
        cp = self.by_end[seq]
        if head.hex() != cp["head_hash"]:
            self.problems.append((seq, f"checkpoint {seq}: head hash differs"))
        if self.leaves is not None:
            self.leaves += tail
            if merkle_root_of_packed(self.leaves, merkle_fanout(cp)) != cp["merkle_root"]:
                self.problems.append((seq, f"checkpoint {seq}: Merkle root differs"))
        self.leaves = None


def main() -> None:
    """Child process: one segment described by the JSON file named by argv; result to stdout."""
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    con = quiet_connect(job["database"], read_only=True, config={"enable_external_access": False})
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

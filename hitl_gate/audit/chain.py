"""The audit chain's hashing rules: entry text, entry hash, folding and Merkle roots.

One module owns the byte forms, so the writer (`seal`), the verifier (`verify`) and the bench
hash exactly the same bytes. An entry is `<previous entry hash>|<canonical JSON envelope>`, and
its hash is SHA-256 of that UTF-8 text: the link to the previous entry is inside the hashed
bytes, so no field, row or order can change without breaking every later hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from hitl_gate.core.hashing import sha256_hex, string_buffers

GENESIS_HASH = "0" * 64
MERKLE_FANOUT = 16  # children per Merkle node in new checkpoints (signed as `merkle_fanout`)
BINARY_FANOUT = 2  # checkpoints without the field: the binary tree used before
SHA256_FUNCTION = "hitl_sha256"


def entry_hash(entry: str) -> str:
    """SHA-256 (hex) of an entry's UTF-8 text."""
    return hashlib.sha256(entry.encode("utf-8")).hexdigest()


def fold_chain(prev_hash: str, envelopes: Iterable[str]) -> tuple[list[str], list[str]]:
    """Link `envelopes` after `prev_hash`: their entry texts and entry hashes, in order.

    Sequential by nature (each hash feeds the next), but the loop is one C-level SHA-256 per
    entry, about 1.5M entries/s here, far above what a run appends.
    """
    entries: list[str] = []
    hashes: list[str] = []
    sha = hashlib.sha256
    for body in envelopes:
        entry = prev_hash + "|" + body
        prev_hash = sha(entry.encode("utf-8")).hexdigest()
        entries.append(entry)
        hashes.append(prev_hash)
    return entries, hashes


def fold_bodies(
    prev_hash: str, bodies: pa.Array | pa.ChunkedArray
) -> tuple[list[str], list[bytes]]:
    """`fold_chain` over an Arrow array of envelopes: hex entry hashes and raw digests.

    The entry text `<prev>|<body>` is hashed from the body's buffer view, never decoded into a
    Python string; the sealer stores the entry text by concatenating in DuckDB.
    """
    sha = hashlib.sha256
    link = (prev_hash + "|").encode("ascii")
    hexes: list[str] = []
    raws: list[bytes] = []
    for offsets, data in string_buffers(bodies):
        for a, b in zip(offsets, offsets[1:], strict=False):
            raw = sha(link + data[a:b]).digest()
            text = raw.hex()
            link = (text + "|").encode("ascii")
            hexes.append(text)
            raws.append(raw)
    return hexes, raws


def fold_packed(prev_hash: str, bodies: pa.Array | pa.ChunkedArray) -> bytes:
    """`fold_bodies` for the sealer: the entry hashes as hex, packed end to end (64 bytes each).

    The loop makes one `bytes` object per entry and no Python string or list item: the caller
    turns the packed hex into the `entry_hash` and `prev_hash` columns with two Arrow buffers
    (`hex_column`) and feeds the Merkle tree from it, which is what made folding a day's 2M
    entries cost several seconds more than the hashing itself.
    """
    sha = hashlib.sha256
    link = (prev_hash + "|").encode("ascii")
    out = bytearray()
    extend = out.extend
    for offsets, data in string_buffers(bodies):
        for a, b in zip(offsets, offsets[1:], strict=False):
            hexed = sha(link + data[a:b]).hexdigest().encode("ascii")
            extend(hexed)
            link = hexed + b"|"
    return bytes(out)


class MerkleBuilder:
    """`merkle_root_of_packed` computed as leaves arrive, holding at most `fanout` per level.

    A seal of ten million entries would otherwise keep every raw digest (32 bytes each, plus
    a Python object) until it signs. Full groups are hashed as soon as they fill; `root` then
    closes each level as the batch form does (a last group of several nodes is hashed, a last
    single node is promoted to the level above, after that level's full groups), so the root
    is the same bytes for any split of the leaves into `add` calls.
    """

    def __init__(self, fanout: int = MERKLE_FANOUT) -> None:
        self.fanout = fanout
        self.pending: list[bytearray] = []  # per level: nodes not yet in a full group
        self.flushed: list[bool] = []  # per level: whether a full group was hashed
        self.leaves = 0

    def add(self, digests: bytes) -> None:
        """Add raw 32-byte leaf digests, packed end to end."""
        self.leaves += len(digests) // 32
        self._push(0, digests)

    def add_hex(self, packed_hex: bytes) -> None:
        """Add leaves given as packed hex (`fold_packed`'s form)."""
        self.add(bytes.fromhex(packed_hex.decode("ascii")))

    def _push(self, level: int, nodes: bytes) -> None:
        while len(self.pending) <= level:
            self.pending.append(bytearray())
            self.flushed.append(False)
        buffer = self.pending[level]
        buffer += nodes
        width = 32 * self.fanout
        full = len(buffer) // width * width
        if not full:
            return
        view = memoryview(buffer)
        sha = hashlib.sha256
        parents = b"".join(sha(view[i : i + width]).digest() for i in range(0, full, width))
        view.release()
        del buffer[:full]
        self.flushed[level] = True
        self._push(level + 1, parents)

    def root(self) -> str:
        """The hex root of every leaf added (64 zeros for none); the builder is then spent."""
        level = 0
        while level < len(self.pending):
            rest = bytes(self.pending[level])
            if not self.flushed[level] and len(rest) <= 32:  # the level's only node: the root
                return rest.hex() if rest else GENESIS_HASH
            if len(rest) > 32:
                rest = hashlib.sha256(rest).digest()
            self.pending[level] = bytearray()
            if rest:
                self._push(level + 1, rest)
            level += 1
        return GENESIS_HASH


@contextmanager
def sha256_function(con: duckdb.DuckDBPyConnection) -> Iterator[str]:
    """Make `hitl_sha256(VARCHAR)` callable in SQL on `con` for the block; yield its name.

    Same hex as DuckDB's `sha256()`, but computed by OpenSSL (SHA-NI) over each Arrow chunk's
    buffer: about 4x faster per kilobyte here than DuckDB's own, which is what canonicalising
    a day of lineage spends most of its time on.
    """
    from duckdb import func, sqltypes

    con.create_function(
        SHA256_FUNCTION,
        sha256_hex,
        [sqltypes.VARCHAR],
        sqltypes.VARCHAR,
        type=func.PythonUDFType.ARROW,
    )
    try:
        yield SHA256_FUNCTION
    finally:
        con.remove_function(SHA256_FUNCTION)


def merkle_fanout(checkpoint: dict[str, Any]) -> int:
    """The Merkle fan-out a checkpoint was signed with (binary when it predates the field)."""
    fanout = checkpoint.get("merkle_fanout")
    return BINARY_FANOUT if fanout is None else int(fanout)


def merkle_root(leaf_hashes: Sequence[str], fanout: int = MERKLE_FANOUT) -> str:
    """Merkle root (hex) over hex leaf hashes (see `merkle_root_of_packed` for the tree).

    Lets an auditor prove one entry belongs to a signed run with a few hashes per level,
    without the rest of the log.
    """
    return merkle_root_of_digests([bytes.fromhex(h) for h in leaf_hashes], fanout)


def merkle_root_of_digests(leaves: Sequence[bytes], fanout: int = MERKLE_FANOUT) -> str:
    """`merkle_root` over raw 32-byte digests (no hex round trip)."""
    return merkle_root_of_packed(b"".join(leaves), fanout)


def merkle_root_of_packed(packed: bytes | bytearray, fanout: int = MERKLE_FANOUT) -> str:
    """Merkle root over 32-byte digests packed end to end (the verifier's form).

    Each level groups `fanout` consecutive nodes and hashes their concatenated raw digests;
    a last group of several nodes is hashed the same way, a last single node is promoted as
    is, and the root of no leaves is 64 zeros. `fanout` 2 is the classic binary tree, which
    checkpoints signed before the field existed use; new checkpoints use 16 and sign it
    (`merkle_fanout`). Why 16: a tree has about n / (fanout - 1) nodes, and in Python each
    node costs one SHA-256 call whose overhead (~0.3 us) is far above hashing 64 bytes, so the
    binary tree cost `verify` as much as hashing the entries themselves; at 16 it is about a
    tenth, while an inclusion proof stays small (15 siblings a level, 6 levels for 10M).
    Groups are hashed as slices of the level's buffer, never copied into new objects.
    """
    if not packed:
        return GENESIS_HASH
    level = bytes(packed)
    width = 32 * fanout
    sha = hashlib.sha256
    while len(level) > 32:
        view = memoryview(level)
        full = len(level) // width * width
        nodes = [sha(view[i : i + width]).digest() for i in range(0, full, width)]
        rest = level[full:]
        if len(rest) > 32:
            nodes.append(sha(rest).digest())
        level = b"".join(nodes) + (rest if len(rest) == 32 else b"")
    return level.hex()

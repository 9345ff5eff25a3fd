"""SHA-256 over Arrow string arrays, read straight from their buffers.

The row digests of features (`core.digests`) and the audit chain (`audit.chain`: the sealer,
the verifier and the `hitl_sha256` SQL function) hash millions of strings a day. Hashing
`data[offsets[i]:offsets[i + 1]]` from a view of the Arrow data buffer needs no Python string
per row, and the hex text of all digests is made by one `bytes.hex()` and laid into an Arrow
array with two buffers. One module owns this walk so every caller hashes exactly the same bytes
the same way; it lives in `core` because `audit` may import `core`, not the reverse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HASH_HEX_CHARS = 64  # one SHA-256 in hex


def string_buffers(strings: pa.Array | pa.ChunkedArray) -> Iterator[tuple[list[int], memoryview]]:
    """Per chunk of an Arrow string array: its offsets and a view of its UTF-8 data buffer.

    Chunks are read where they are (no copy into one array); nulls read as empty strings and
    other string layouts (e.g. `string_view`) are cast to `large_string` first.
    """
    chunks = strings.chunks if isinstance(strings, pa.ChunkedArray) else [strings]
    for chunk in chunks:
        if chunk.null_count:
            chunk = pc.fill_null(chunk, "")
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.large_string())
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=width)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ].tolist()
        yield offsets, memoryview(data_buf) if data_buf is not None else memoryview(b"")


def sha256_digests(strings: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """Raw SHA-256 of each string of an Arrow string array, hashed from its buffers."""
    sha = hashlib.sha256
    digests: list[bytes] = []
    for offsets, data in string_buffers(strings):
        digests += [sha(data[a:b]).digest() for a, b in zip(offsets, offsets[1:], strict=False)]
    return digests


def sha256_packed(strings: pa.Array | pa.ChunkedArray) -> bytes:
    """`sha256_digests` packed end to end: 32 bytes per string, one `bytes` object.

    The verifier's form: numpy compares it as an (n, 4) uint64 matrix and the Merkle tree reads
    its pairs as 64-byte slices, so no per-digest Python object outlives the hashing loop.
    """
    return b"".join(sha256_digests(strings))


def hex_column(packed_hex: bytes) -> pa.Array:
    """An Arrow string array of the 64-character hex hashes packed end to end in `packed_hex`."""
    n = len(packed_hex) // HASH_HEX_CHARS
    offsets = np.arange(0, (n + 1) * HASH_HEX_CHARS, HASH_HEX_CHARS, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(packed_hex))


def sha256_hex(strings: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hex SHA-256 of the UTF-8 bytes of each string, as an Arrow `large_string` array."""
    return hex_column(sha256_packed(strings).hex().encode("ascii"))

"""SHA-256 from Arrow buffers: the same digests as hashlib for every string layout and slicing."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from hitl_gate.core.hashing import (
    HASH_HEX_CHARS,
    hex_column,
    sha256_digests,
    sha256_hex,
    sha256_packed,
)

TEXTS = ["", "a", "ünï|=∅", "x" * 5000, "0" * 64 + "|{}"]
WANT = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in TEXTS]


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_every_string_layout_hashes_as_hashlib(arrow_type: pa.DataType) -> None:
    strings = pa.array(TEXTS, arrow_type)
    assert sha256_hex(strings).to_pylist() == WANT
    assert sha256_packed(strings) == b"".join(bytes.fromhex(digest) for digest in WANT)


def test_a_sliced_array_hashes_only_its_own_rows() -> None:
    """An array's offset matters: a slice must not hash the rows before it."""
    for arrow_type in (pa.string(), pa.large_string()):
        assert sha256_hex(pa.array(TEXTS, arrow_type).slice(1, 3)).to_pylist() == WANT[1:4]


def test_chunks_are_hashed_in_order_without_being_joined() -> None:
    chunked = pa.chunked_array([TEXTS[:2], TEXTS[2:3], [], TEXTS[3:]], pa.string())
    assert [digest.hex() for digest in sha256_digests(chunked)] == WANT


def test_a_null_hashes_as_the_empty_string() -> None:
    """The chain's reading: a missing text is hashed as empty, never skipped (rows stay aligned)."""
    assert sha256_hex(pa.array(["a", None, "b"])).to_pylist() == [
        WANT[1],
        WANT[0],
        hashlib.sha256(b"b").hexdigest(),
    ]


def test_hex_column_cuts_packed_hex_into_64_character_rows() -> None:
    packed = "".join(WANT).encode("ascii")
    column = hex_column(packed)
    assert column.to_pylist() == WANT
    assert len(hex_column(b"")) == 0 and HASH_HEX_CHARS == 64

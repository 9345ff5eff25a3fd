"""Row digests: a SHA-256 per row over a fixed canonical text form of chosen columns.

Every value is cast to text by Polars (one formatter for every code path, see docs/scaling.md on
float formatting), nulls become an explicit marker, and DuckDB's vectorised `sha256()` does the
hashing, so a million rows cost well under a second instead of a Python loop per row. A frame
of a few rows (a trace, a small day) is hashed by `hashlib` instead: opening the DuckDB
connection costs about 27 ms of CPU, a hundred times the hashing; both hash the same UTF-8
bytes of the same canonical text, so the digests are equal (tests/unit/core/test_digests.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from hitl_gate.core.quiet_duckdb import quiet_connect

NULL_MARKER = "\u2205"

# At most this many rows are hashed in Python (about 1 µs a row, against ~27 ms to open DuckDB).
PYTHON_HASHED_ROWS = 5_000


def row_digests(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    """SHA-256 (hex) of `name=value` pairs of `columns`, joined by `|`, for each row."""
    canonical = frame.select(
        pl.concat_str(
            [
                pl.lit(f"{name}=") + pl.col(name).cast(pl.String).fill_null(NULL_MARKER)
                for name in columns
            ],
            separator="|",
        ).alias("canonical")
    )
    if canonical.height <= PYTHON_HASHED_ROWS:
        texts = canonical.get_column("canonical").to_list()
        hashed = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
        return pl.Series("digest", hashed, dtype=pl.String)
    con = quiet_connect(config={"enable_external_access": False})  # hashes a frame, reads no file
    try:
        con.register("canonical_rows", canonical.to_arrow())
        digests = con.sql("SELECT sha256(canonical) AS digest FROM canonical_rows").pl()
    finally:
        con.close()
    column: pl.Series = digests["digest"]
    return column


def canonical_json(payload: Any) -> bytes:
    """The one byte form of a JSON payload that is signed and hashed (key order is irrelevant)."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")

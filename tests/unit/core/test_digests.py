"""Row digests are byte-identical to the definition recorded in lineage before issue 23.

Feature digests are stored in lineage and checked by `verify`, so the rendering (`pl.format`)
and the hashing (OpenSSL over the Arrow buffer) must give exactly the digests of the former
definition, kept here as the reference: per-column `lit(name=) + cast(String)` joined by `|`
with Polars, hashed by DuckDB's `sha256()`.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import polars as pl
import pytest

from hitl_gate.core.digests import NULL_MARKER, row_digests
from hitl_gate.core.quiet_duckdb import quiet_connect

FRAME = pl.DataFrame(
    {
        "case_id": ["A-1", "B|2", "c=3", "ünïcødé ∅ 😀", None, "", "x|y=z|", "∅"],
        "amount": [1.5, None, 1e-7, 12345678.125, -0.0, 3.0, 1e-300, float(2**53 + 2)],
        "big": [1e20, 1e21, 123456789012345678.0, -1e300, 5e-324, 0.1, 2.5e15, 1e16],
        "odd": [math.nan, math.inf, -math.inf, 0.0, None, 1 / 3, -2.0, 100.0],
        "count": [1, 2, None, 4, 5, -6, 2**62, -(2**63)],
        "day": [date(2018, 1, 1), None, date(2018, 3, 31), date(1, 1, 1)] + [date(2018, 1, 2)] * 4,
        "at": [datetime(2018, 1, 1, 12, 30), None, None, datetime(2018, 1, 2, 0, 0, 0, 1)] * 2,
        "flag": [True, False, None, True, True, False, None, False],
        "f32": pl.Series([1.1, None, -0.0, 3.4e38, 1e-45, 7.0, 0.5, 2.0], dtype=pl.Float32),
    }
)


def former_row_digests(frame: pl.DataFrame, columns: list[str]) -> list[Any]:
    """The definition digests were recorded with before issue 23 (Polars text, DuckDB)."""
    canonical = frame.select(
        pl.concat_str(
            [
                pl.lit(f"{name}=") + pl.col(name).cast(pl.String).fill_null(NULL_MARKER)
                for name in columns
            ],
            separator="|",
        ).alias("canonical")
    )
    con = quiet_connect(config={"enable_external_access": False})
    try:
        con.register("canonical_rows", canonical.to_arrow())
        return (
            con.sql("SELECT sha256(canonical) AS digest FROM canonical_rows")
            .pl()["digest"]
            .to_list()
        )
    finally:
        con.close()


@pytest.mark.parametrize(
    "columns",
    [FRAME.columns, ["amount"], ["case_id", "flag"], ["odd", "big", "f32", "day", "at"]],
    ids=["every-type", "one-float", "text-and-bool", "edge-floats-and-times"],
)
def test_digests_are_the_former_definitions(columns: list[str]) -> None:
    got = row_digests(FRAME, columns)
    assert got.dtype == pl.String and got.name == "digest"
    assert got.to_list() == former_row_digests(FRAME, columns)


def test_every_row_has_its_own_digest() -> None:
    assert row_digests(FRAME, FRAME.columns).n_unique() == FRAME.height


def test_names_with_braces_and_separators_render_as_themselves() -> None:
    """`pl.format` reads `{}` as a placeholder: braces in a name are escaped."""
    frame = FRAME.select(
        pl.col("amount").alias("a{b}"), pl.col("case_id").alias("{}"), pl.col("day").alias("x|y=")
    )
    assert row_digests(frame, frame.columns).to_list() == former_row_digests(frame, frame.columns)


def test_a_sliced_frame_hashes_its_own_rows() -> None:
    """A frame that is a slice of another (an Arrow offset into shared buffers)."""
    sliced = FRAME.slice(3, 4)
    assert row_digests(sliced, FRAME.columns).to_list() == former_row_digests(sliced, FRAME.columns)


def test_many_rows_in_several_chunks() -> None:
    """More rows than one Arrow chunk of a rendering, from a frame of several chunks."""
    big = pl.concat([FRAME] * 800, rechunk=False).with_row_index("i")
    columns = ["i", *FRAME.columns]
    assert row_digests(big, columns).to_list() == former_row_digests(big, columns)


def test_an_empty_frame_has_no_digests() -> None:
    empty = row_digests(FRAME.clear(), ["case_id", "amount"])
    assert empty.len() == 0 and empty.dtype == pl.String

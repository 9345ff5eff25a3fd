"""The column-wise context digest is byte-identical to the row-by-row definition.

Export writes `context_digests` into the signed manifest and intake recomputes it from the
returned file; both must agree with `row_digest` (the documented canonical JSON) for any
value, whether it takes the column-wise path (with its per-value Python fallback) or the
row-by-row path small frames take.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitl_gate.review.canonical import (
    context_digests,
    json_literal_frame,
    raw_text,
    row_digest,
    sheet_text,
    text_row_digests,
)

EDGES = [
    "", " ", "5", " 5 ", "5.", ".5", "+.5", "-0", "-0.0000004", "-0.0000005", "0.0000005",
    "0.0000015", "0.0000025", "1.2345675", "1.23456750001", "007", "00.100", "1e5", "1E-7",
    'a"b\\c', "é", "a\nb", "a\r\nb", "\r", "\t5", "x\x1f", "9" * 22, "9" * 23,
    "999999999999.9999995", "-999999999999.9999995", "9999999999999.12345678", "-", "--5",
    "٣", "inf", "true", None, 5000.0, 1e-05, 1e-7, 0.1234565, 2.5e-7, -0.0, 3, -12, True,
    float("inf"), float("nan"), 10**30, 1e300, 5e-324,
]  # fmt: skip

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=9).map(str),
    st.text(max_size=12),
    st.text(alphabet="0123456789.-+eE ", max_size=14),
    st.sampled_from(EDGES),
)


def _reference(rows: list[dict], columns: list[str]) -> list[str]:
    return [row_digest(row, columns) for row in rows]


def _frame(rows: list[dict], columns: list[str], convert=raw_text) -> pl.DataFrame:
    return pl.DataFrame(
        {name: [convert(row.get(name)) for row in rows] for name in columns},
        schema=dict.fromkeys(columns, pl.String),
    )


COLUMN_WISE, ROW_WISE = 0, 10**9  # `column_wise_from`: every frame one way or the other


@pytest.mark.slow  # a property suite: `make test`, not test-fast
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(values, values), min_size=1, max_size=30),
    st.integers(1, 5),
    st.sampled_from([COLUMN_WISE, ROW_WISE]),
)
def test_column_wise_digest_equals_row_definition(
    pairs: list[tuple], repeat: int, column_wise_from: int
) -> None:
    # Repeating rows sends columns down the distinct-value path, unique rows down the other.
    rows = [{"b": b, "a": a} for a, b in pairs] * repeat
    columns = ["b", "a", "missing"]
    got = context_digests(_frame(rows, ["a", "b"]), columns, column_wise_from=column_wise_from)
    assert got == _reference(rows, columns)


@pytest.mark.parametrize("column_wise_from", [COLUMN_WISE, ROW_WISE])
def test_edge_values_digest_alike_on_both_paths(column_wise_from: int) -> None:
    # Formula-neutralised text (a leading apostrophe) is restored before digesting on both.
    edges = [*EDGES, "'=1+1", "''=x", "'a", "'\n", "'"]
    rows = [{"v": v, "w": w} for v in edges for w in (None, "'-5", "x")]
    frame = _frame(rows, ["v", "w"])
    assert context_digests(frame, ["w", "v", "gone"], column_wise_from=column_wise_from) == (
        _reference(rows, ["w", "v", "gone"])
    )


def test_small_frames_take_the_row_path_and_typed_frames_never_do() -> None:
    rows = [{"a": "1.50", "b": "x"}] * 3
    frame = _frame(rows, ["a", "b"])
    assert context_digests(frame, ["a", "b"]) == _reference(rows, ["a", "b"])
    # A non-text column is cast to text by Polars in the column-wise form (a timestamp as
    # "2018-01-01 12:30:00.000000", not Python's isoformat): a typed frame, however small,
    # is never digested row by row from Python values.
    typed = pl.DataFrame({"a": [datetime(2018, 1, 1, 12, 30)], "b": ["x"]})
    assert context_digests(typed, ["a", "b"]) == context_digests(
        typed, ["a", "b"], column_wise_from=COLUMN_WISE
    )


def test_edge_values_take_both_paths_and_agree() -> None:
    from json.encoder import encode_basestring_ascii

    from hitl_gate.review.canonical import canonical_text

    unique = pl.Series("v", [raw_text(v) for v in EDGES], dtype=pl.String)
    repeated = pl.concat([unique] * 5)
    for series in (unique, repeated):
        got = json_literal_frame(series.to_frame())["v"].to_list()
        want = [encode_basestring_ascii(canonical_text(v)) for v in series.to_list()]
        assert got == want


def test_sheet_numbers_match_their_exported_text() -> None:
    rows = [{"id": 5000, "x": 0.5}, {"id": 12, "x": 1e-7}]
    read_back = [{"id": 5000.0, "x": 0.5}, {"id": 12.0, "x": 1e-7}]  # as Excel may return them
    exported = context_digests(_frame(rows, ["id", "x"]), ["id", "x"])
    assert context_digests(_frame(read_back, ["id", "x"], sheet_text), ["id", "x"]) == exported
    assert sheet_text(1e300) == raw_text(1e300)  # no false integer expansion of huge floats


@pytest.mark.parametrize("column_wise_from", [COLUMN_WISE, ROW_WISE])
def test_text_columns_as_lists_digest_as_their_frame(column_wise_from: int) -> None:
    # Export's batches: `text_row_digests` of the rows' text is `context_digests` of that
    # frame, whichever way the frame is digested.
    edges = [*EDGES, "'=1+1", "'a"]
    rows = [{"v": v, "w": w} for v in edges for w in (None, "'-5", "x")]
    for columns in (["w", "v"], ["v"]):
        text = {name: [raw_text(row.get(name)) for row in rows] for name in columns}
        got = text_row_digests(text, columns, len(rows))
        frame = _frame(rows, columns)
        assert got == context_digests(frame, columns, column_wise_from=column_wise_from)
        assert got == _reference(rows, columns)


@pytest.mark.parametrize("column_wise_from", [COLUMN_WISE, ROW_WISE])
def test_no_columns_and_no_rows(column_wise_from: int) -> None:
    frame = pl.DataFrame({"a": ["1", "2"]})
    got = context_digests(frame, [], column_wise_from=column_wise_from)
    assert got == [row_digest({}, [])] * 2
    assert context_digests(frame.clear(), ["a"], column_wise_from=column_wise_from) == []

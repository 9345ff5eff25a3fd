"""Row digests hashed in Python (small frames) equal DuckDB's `sha256()` of the same text."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from hitl_gate.core import digests
from hitl_gate.core.digests import row_digests

FRAME = pl.DataFrame(
    {
        "case_id": ["A-1", "B|2", "c=3", "ünïcødé ∅", None, ""],
        "amount": [1.5, None, 1e-7, 12345678.125, -0.0, 3.0],
        "count": [1, 2, None, 4, 5, -6],
        "day": [
            date(2018, 1, 1),
            None,
            date(2018, 3, 31),
            date(2018, 2, 28),
            None,
            date(2018, 1, 2),
        ],
        "at": [datetime(2018, 1, 1, 12, 30), None, None, datetime(2018, 1, 2), None, None],
        "flag": [True, False, None, True, True, False],
    }
)


def test_small_frames_hash_in_python_to_duckdbs_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    columns = FRAME.columns
    in_python = row_digests(FRAME, columns)
    monkeypatch.setattr(digests, "PYTHON_HASHED_ROWS", -1)  # every frame through DuckDB
    in_duckdb = row_digests(FRAME, columns)
    assert in_python.dtype == in_duckdb.dtype == pl.String
    assert in_python.name == in_duckdb.name == "digest"
    assert in_python.to_list() == in_duckdb.to_list()
    assert in_python.n_unique() == FRAME.height  # every row's text differs, so every digest does


def test_an_empty_frame_has_no_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = FRAME.clear()
    in_python = row_digests(empty, ["case_id", "amount"])
    monkeypatch.setattr(digests, "PYTHON_HASHED_ROWS", -1)
    in_duckdb = row_digests(empty, ["case_id", "amount"])
    assert in_python.len() == in_duckdb.len() == 0
    assert in_python.dtype == in_duckdb.dtype == pl.String

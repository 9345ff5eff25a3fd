"""The ranges of case ids a sliced day's decisions are inserted by (`routing.key_order`)."""

from __future__ import annotations

import polars as pl

from hitl_gate.routing.key_order import range_bounds


def test_ranges_hold_a_given_number_of_sorted_ids_and_equal_ids_share_one() -> None:
    ids = pl.Series(["q", "a", "z", "c", "b", "a", "m"])
    bounds = range_bounds(ids, 2)
    assert bounds.to_list() == ["a", "c", "q"]  # sorted: a a | b c | m q | z
    ranges = bounds.search_sorted(ids, side="left").to_list()
    assert ranges == [2, 0, 3, 1, 1, 0, 2]
    assert range_bounds(ids, 7).len() == 0, "a day within one range has no bound"

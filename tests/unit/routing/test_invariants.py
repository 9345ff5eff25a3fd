"""Invariants of a routed day: one allowed route per case; review overflow and its severity."""

from __future__ import annotations

from datetime import date

import polars as pl

from hitl_gate.routing.invariants import capacity_overflow, route_violations

D1, D2 = date(2018, 3, 5), date(2018, 3, 6)


def test_one_allowed_route_per_case_carried_copies_aside() -> None:
    routed = pl.DataFrame(
        {
            "cid": ["a", "b", "b", "c", "d"],
            "route": ["auto_approve", "human_review", "human_review", "held", "auto_decline"],
            "carried_from": [None, None, D1, None, None],
        }
    )
    found = route_violations(routed, "cid")
    assert (found.rows, found.bad_routes, found.duplicates) == (4, 1, 0)
    assert not found.passed
    twice = route_violations(routed.filter(pl.col("cid") != "c").vstack(routed.head(1)), "cid")
    assert (twice.bad_routes, twice.duplicates, twice.passed) == (0, 1, False)
    assert route_violations(routed.filter(pl.col("cid") != "c"), "cid").passed


def test_overflow_counts_days_and_flags_more_than_a_days_capacity() -> None:
    reviews = pl.DataFrame(
        {
            "partition_date": [D1] * 5 + [D2] * 3 + [D2],
            "review_queue": ["q"] * 5 + ["q"] * 3 + ["r"],
            # q, D1: 2 reviewed, 3 deferred (more than a day's capacity); D2: 2 and 1.
            "review_deferred": [False, False, True, True, True, False, False, True, False],
        }
    )
    found = capacity_overflow(reviews)
    assert (found.review_cases, found.deferred) == (9, 4)
    assert (found.days_over_capacity, found.days_overflow_above_one_day_capacity) == (2, 1)
    assert found.per_queue.rows() == [("q", 8, 4, 3), ("r", 1, 0, 0)]


def test_no_review_work_is_no_overflow() -> None:
    empty = pl.DataFrame(
        schema={"partition_date": pl.Date, "review_queue": pl.String, "review_deferred": pl.Boolean}
    )
    found = capacity_overflow(empty)
    assert (found.review_cases, found.deferred, found.days_over_capacity) == (0, 0, 0)


def test_route_violations_on_a_scan_equal_the_exact_count_of_a_frame() -> None:
    """A stored day's scan (lazy) counts as the frame's exact text comparison would: every
    repeat found (nulls counted as one value, as `n_unique` does), carried copies aside."""
    ids = [f"c{i % 997}" for i in range(3000)] + [None, None]
    routed = pl.DataFrame(
        {
            "cid": ids,
            "route": ["auto_approve", "human_review", "odd"] * 1000 + ["auto_decline"] * 2,
            "carried_from": [D1 if i % 5 == 0 else None for i in range(3002)],
        }
    )
    own = routed.filter(pl.col("carried_from").is_null())
    exact = (own.height, own.filter(pl.col("route") == "odd").height,
             own.height - own["cid"].n_unique())  # fmt: skip
    found = route_violations(routed.lazy(), "cid")
    assert (found.rows, found.bad_routes, found.duplicates) == exact
    assert found.duplicates > 0 and not found.passed
    unique = route_violations(
        pl.LazyFrame({"cid": ["a", "b"], "route": ["auto_approve"] * 2}), "cid"
    )
    assert (unique.rows, unique.duplicates, unique.passed) == (2, 0, True)

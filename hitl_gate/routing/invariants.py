"""What must hold of a routed day: one allowed route per case; review within capacity; halts.

The asset checks on `routed_decisions` report these; the rules themselves live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from policies.capacity import own_rows
from policies.model import AUTO_APPROVE, AUTO_DECLINE, HUMAN_REVIEW

ROUTES = [AUTO_APPROVE, AUTO_DECLINE, HUMAN_REVIEW]


@dataclass(frozen=True)
class RouteViolations:
    """Cases (own rows) checked, cases with a route outside `ROUTES`, repeated case ids."""

    rows: int
    bad_routes: int
    duplicates: int

    @property
    def passed(self) -> bool:
        return self.bad_routes == 0 and self.duplicates == 0


def route_violations(routed: pl.DataFrame, case_id: str) -> RouteViolations:
    """Every case must have exactly one route from `ROUTES`.

    Carried copies (a deferred case in a later day's review pool) are not new routes.
    """
    own = own_rows(routed)
    return RouteViolations(
        rows=own.height,
        bad_routes=own.filter(~pl.col("route").is_in(ROUTES)).height,
        duplicates=own.height - own[case_id].n_unique(),
    )


@dataclass(frozen=True)
class CapacityOverflow:
    """Review cases and deferrals, per day and queue, against the queues' daily capacity."""

    review_cases: int
    deferred: int
    days_over_capacity: int
    days_overflow_above_one_day_capacity: int
    per_queue: pl.DataFrame  # review_queue, routed, deferred, worst_day_deferred


def capacity_overflow(reviews: pl.DataFrame) -> CapacityOverflow:
    """How far review work exceeds capacity; `reviews` are the human-review rows of a run.

    `reviews` holds `partition_date`, `review_queue` and `review_deferred`. A day overflows a
    queue when any case is deferred; it overflows by more than a day's capacity when more are
    deferred than reviewed (on a day with overflow, those reviewed are exactly the capacity).
    """
    per_day = reviews.group_by("partition_date", "review_queue").agg(
        pl.len().alias("routed"), pl.col("review_deferred").sum().alias("deferred")
    )
    overflow = per_day.filter(pl.col("deferred") > 0)
    per_queue = (
        per_day.group_by("review_queue")
        .agg(
            pl.col("routed").sum(),
            pl.col("deferred").sum(),
            pl.col("deferred").max().alias("worst_day_deferred"),
        )
        .sort("review_queue")
    )
    capacity_hit = overflow.with_columns((pl.col("routed") - pl.col("deferred")).alias("capacity"))
    return CapacityOverflow(
        review_cases=reviews.height,
        deferred=int(reviews["review_deferred"].sum()),
        days_over_capacity=overflow.height,
        days_overflow_above_one_day_capacity=capacity_hit.filter(
            pl.col("deferred") > pl.col("capacity")
        ).height,
        per_queue=per_queue,
    )

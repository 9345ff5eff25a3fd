"""What must hold of a routed day: one allowed route per case; review within capacity; halts.

The asset checks on `routed_decisions` report these; the rules themselves live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from policies.capacity import CARRIED_FROM
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


def route_violations(routed: pl.LazyFrame | pl.DataFrame, case_id: str) -> RouteViolations:
    """Every case must have exactly one route from `ROUTES`.

    Carried copies (a deferred case in a later day's review pool) are not new routes.
    Counted by queries on the scan, never by holding the day's case ids (text, tens of bytes
    a case; 16.6 s and a few GB at ten million): repeats are found among the ids' 64-bit
    hashes (8 bytes a case), and only the ids whose hash repeats are read back and compared
    as text, so a hash collision is never taken for a repeated case.
    """
    scan = routed.lazy()
    if CARRIED_FROM in scan.collect_schema().names():
        scan = scan.filter(pl.col(CARRIED_FROM).is_null())
    hashed = pl.col(case_id).hash()
    counts, repeated = pl.collect_all(
        [
            scan.select(pl.len().alias("rows"), (~pl.col("route").is_in(ROUTES)).sum()),
            scan.select(hashed.alias("hash")).group_by("hash").len().filter(pl.col("len") > 1),
        ]
    )
    rows, bad_routes = counts.row(0)
    duplicates = 0
    if repeated.height:
        ids = scan.filter(hashed.is_in(repeated["hash"].implode())).select(case_id).collect()
        duplicates = ids.height - ids[case_id].n_unique()
    return RouteViolations(rows=int(rows), bad_routes=int(bad_routes), duplicates=duplicates)


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

"""From a policy's routes to the day's decisions: QA sample, kill switch, reviewer capacity.

Order matters and is fixed:
1. `route_cases`: the policy's own route, kept as `proposed_route`.
2. QA sampling sends a deterministic share of automatic routes to review (`qa_sample`).
3. While automation is halted, every remaining automatic route goes to review (`HALT`).
4. Reviewer capacity: per day and queue, the first `daily_capacity` cases (by priority, then
   the policy's `capacity_order` columns, highest first) are reviewed today; the rest are
   `review_deferred`. Deferred cases keep the route `human_review`: overflow is never
   auto-approved, it waits.
`route_override` says which of 2-3 changed a route (`qa_sample`, `halt`), null otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import polars as pl

from policies.engine import route_cases
from policies.model import AUTO_APPROVE, AUTO_DECLINE, HUMAN_REVIEW, Policy
from policies.qa import apply_qa_sampling

HALT_REASON_CODE = "HALT"
HALT_PRIORITY = 2
# Columns `decide` adds on top of `route_cases`'s.
DECISION_EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "proposed_route": pl.String(),
    "route_override": pl.String(),
    "qa_sample": pl.Boolean(),
    "qa_probability": pl.Float64(),
    "review_deferred": pl.Boolean(),
}


def decide(
    policy: Policy, cases: pl.DataFrame, case_id: str, *, halted: bool = False
) -> pl.DataFrame:
    """Route `cases` and apply QA sampling, the kill switch and reviewer capacity."""
    routed = route_cases(policy, cases).with_columns(pl.col("route").alias("proposed_route"))
    routed = apply_qa_sampling(policy, routed, case_id)
    automatic = pl.col("route").is_in([AUTO_APPROVE, AUTO_DECLINE])
    routed = routed.with_columns((automatic & pl.lit(halted)).alias("__halted"))
    routed = routed.with_columns(
        _when_halted(pl.lit(HUMAN_REVIEW), "route"),
        _when_halted(pl.lit(HALT_REASON_CODE), "route_reason_code"),
        _when_halted(pl.lit(policy.queue_for_halt), "review_queue"),
        _when_halted(pl.lit(HALT_PRIORITY, pl.Int32), "review_priority"),
        pl.when("qa_sample")
        .then(pl.lit("qa_sample"))
        .when("__halted")
        .then(pl.lit("halt"))
        .otherwise(pl.lit(None, pl.String))
        .alias("route_override"),
    ).drop("__halted")
    return apply_capacity(policy, routed)


def _when_halted(value: pl.Expr, column: str) -> pl.Expr:
    return pl.when("__halted").then(value).otherwise(column).alias(column)


def _day_column(frame: pl.DataFrame) -> pl.Expr:
    """Capacity is per day: the partition day when there is one, else one day for all."""
    return pl.col("partition_date") if "partition_date" in frame.columns else pl.lit(0)


def with_queue_capacity(policy: Policy, capacities: Mapping[str, int | None]) -> Policy:
    """The policy with reviewer capacity filled in from the review settings' queues.

    Capacity is a fact about the reviewing team, so its home is the domain's review settings
    (`review.yaml`); a capacity written in the policy file itself still wins, so a policy
    team can tighten it for one version.
    """
    declared = {q: c for q, c in capacities.items() if c is not None}
    merged = {**declared, **policy.queue_capacity}
    return policy if merged == policy.queue_capacity else replace(policy, queue_capacity=merged)


def apply_capacity(policy: Policy, routed: pl.DataFrame) -> pl.DataFrame:
    """Mark review cases beyond their queue's daily capacity as `review_deferred`."""
    if not policy.queue_capacity or routed.height == 0:
        return routed.with_columns(pl.lit(False).alias("review_deferred"))
    keys = [pl.col("review_priority"), *(-_numeric(c) for c in policy.capacity_order)]
    group = ["__day", "review_queue"]
    ranked = (
        routed.with_row_index("__row")
        .with_columns(_day_column(routed).alias("__day"))
        .sort([*group, *keys, "__row"], nulls_last=True)
        .with_columns(
            (pl.int_range(pl.len()).over(group) + 1).alias("__rank"),
            pl.col("review_queue")
            .replace_strict(policy.queue_capacity, default=None, return_dtype=pl.Int64)
            .alias("__cap"),
        )
        .sort("__row")
    )
    deferred = (
        (pl.col("route") == HUMAN_REVIEW)
        & pl.col("__cap").is_not_null()
        & (pl.col("__rank") > pl.col("__cap"))
    )
    return ranked.with_columns(deferred.fill_null(False).alias("review_deferred")).drop(
        "__row", "__day", "__rank", "__cap"
    )


def _numeric(column: str) -> pl.Expr:
    """Descending order key: higher risk or amount first, unknown (null) first of all."""
    return pl.col(column).cast(pl.Float64).fill_null(float("inf"))


def capacity_report(policy: Policy, decided: pl.DataFrame) -> pl.DataFrame:
    """Per day and review queue: cases routed, capacity, deferred and days of backlog."""
    reviews = decided.filter(pl.col("route") == HUMAN_REVIEW)
    report = (
        reviews.group_by(_day_column(reviews).alias("day"), "review_queue")
        .agg(pl.len().alias("routed"), pl.col("review_deferred").sum().alias("deferred"))
        .with_columns(
            pl.col("review_queue")
            .replace_strict(policy.queue_capacity, default=None, return_dtype=pl.Int64)
            .alias("daily_capacity")
        )
        .with_columns((pl.col("deferred") / pl.col("daily_capacity")).ceil().alias("backlog_days"))
        .sort("day", "review_queue")
    )
    return report.select(
        "day", "review_queue", "routed", "daily_capacity", "deferred", "backlog_days"
    )

"""Policy operation checks: reviewer capacity (backpressure) and the kill switch, seen at once."""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from assets.common import markdown_table, stage_key
from hitl_gate.core.domain import DomainConfig


def build_policy_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """Non-blocking checks on the routed decisions of `domain`."""

    @asset_check(
        asset=stage_key(domain, "routed_decisions"),
        description=(
            "Review work within each queue's daily capacity: WARN when any queue overflows "
            "(overflow is deferred, never auto-approved), ERROR when a day's overflow exceeds "
            "a full day of that queue's capacity."
        ),
    )
    def review_capacity_within_limits(routed_decisions: pl.LazyFrame) -> AssetCheckResult:
        reviews = (
            routed_decisions.filter(pl.col("route") == "human_review")
            .select("partition_date", "review_queue", "review_deferred")
            .collect()
        )
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
        # On a day with overflow, the cases kept for review are exactly the queue's capacity.
        capacity_hit = overflow.with_columns(
            (pl.col("routed") - pl.col("deferred")).alias("capacity")
        )
        severe = capacity_hit.filter(pl.col("deferred") > pl.col("capacity")).height
        return AssetCheckResult(
            passed=overflow.height == 0,
            severity=AssetCheckSeverity.ERROR if severe else AssetCheckSeverity.WARN,
            metadata={
                "review_cases": reviews.height,
                "deferred": int(reviews["review_deferred"].sum()),
                "days_over_capacity": overflow.height,
                "days_overflow_above_one_day_capacity": severe,
                "per_queue": markdown_table(per_queue, max_rows=20),
            },
        )

    @asset_check(
        asset=stage_key(domain, "routed_decisions"),
        description="Automation is running (WARN while the kill switch holds every case).",
    )
    def automation_not_halted(routed_decisions: pl.LazyFrame) -> AssetCheckResult:
        halts = routed_decisions.select((pl.col("route_override") == "halt").sum()).collect()
        halted = int(halts.item() or 0)
        return AssetCheckResult(
            passed=halted == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={"cases_held_for_review_by_halt": halted},
        )

    return [review_capacity_within_limits, automation_not_halted]

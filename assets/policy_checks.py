"""Policy operation checks: reviewer capacity (backpressure) and the kill switch, seen at once."""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from assets.common import markdown_metadata, stage_key
from hitl_gate.core.domain import DomainConfig
from hitl_gate.routing.invariants import capacity_overflow


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
        overflow = capacity_overflow(reviews)
        severe = overflow.days_overflow_above_one_day_capacity
        return AssetCheckResult(
            passed=overflow.days_over_capacity == 0,
            severity=AssetCheckSeverity.ERROR if severe else AssetCheckSeverity.WARN,
            metadata={
                "review_cases": overflow.review_cases,
                "deferred": overflow.deferred,
                "days_over_capacity": overflow.days_over_capacity,
                "days_overflow_above_one_day_capacity": severe,
                "per_queue": markdown_metadata(overflow.per_queue, max_rows=20),
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

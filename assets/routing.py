"""Routing asset: the domain's versioned policy sends every case to exactly one route."""

from functools import partial
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
)

from assets.common import markdown_metadata, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.domain import DomainConfig
from hitl_gate.routing.day import RoutedDays, route_days
from hitl_gate.routing.decisions import InvalidPolicy
from hitl_gate.routing.shadow import ShadowRun
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import AuditDatabase


def _backlog_end(capacity: pl.DataFrame) -> int:
    """Cases still waiting for review at the end of the run's last day, all queues."""
    if capacity.height == 0:
        return 0
    last = capacity.filter(pl.col("day") == pl.col("day").max())
    return int(last["backlog_after"].sum())


def _shadow_metadata(shadow: ShadowRun | None) -> dict[str, object]:
    """The shadow policy's comparison, or why it was not run; nothing without one."""
    if shadow is None:
        return {}
    if shadow.comparison is None:
        return {
            "shadow_policy_version": shadow.policy.version,
            "shadow_error": MetadataValue.md("\n".join(f"- {p}" for p in shadow.problems)),
        }
    return {
        "shadow_policy_version": shadow.policy.version,
        "shadow_policy_digest": shadow.policy.digest,
        "shadow_agreement": shadow.comparison.agreement,
        "shadow_newly_auto_approved": shadow.comparison.newly_auto_approved,
        "shadow_transitions": markdown_metadata(shadow.comparison.transitions),
    }


def _routing_output(routed: RoutedDays) -> Output:
    """The step's output with its metadata, computed from `routed.decided`."""
    from policies.capacity import own_rows

    decided, capacity = routed.decided, routed.capacity
    own = own_rows(decided)
    mix = own.group_by("route").len().sort("route")
    extra = {"slices": routed.slices} if routed.slices else _shadow_metadata(routed.shadow)
    return Output(
        routed.output,
        metadata={
            "rows": own.height,
            "policy_version": routed.policy.version,
            "policy_digest": routed.policy.digest,
            "policy_origin": routed.origin,
            "automation_halted": routed.halt.halted,
            "route_mix": markdown_metadata(mix),
            **{f"route_{r}": int(n) for r, n in mix.iter_rows()},
            "qa_sampled": int(decided["qa_sample"].sum()),
            "review_deferred": int(own["review_deferred"].sum()),
            "carried_over_in": int(decided["carried_from"].is_not_null().sum()),
            "backlog_from_earlier_days": routed.backlog.height,
            "review_backlog_end": _backlog_end(capacity),
            "expected_backlog_days": float(capacity["backlog_days"].max() or 0),
            "review_capacity": markdown_metadata(capacity, max_rows=20),
            **extra,
        },
    )


def build_routing_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `routed_decisions` asset of one domain."""
    key = stage_key(domain, "routed_decisions")

    @daily_stage_asset(
        domain,
        key,
        ins={
            "validated_cases": upstream(domain, "validated_cases"),
            "case_features": upstream(domain, "case_features"),
            "risk_scores": upstream(domain, "risk_scores"),
        },
        description=(
            f"Every case routed by policy `{domain.policy}` to auto_approve, auto_decline or "
            "human_review, with every rule that fired; written to the audit table `decisions`."
        ),
        kinds={"polars", "duckdb"},
    )
    def routed_decisions(
        context: AssetExecutionContext,
        validated_cases: pl.LazyFrame,
        case_features: pl.LazyFrame,
        risk_scores: pl.LazyFrame,
        audit_db: AuditDatabase,
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output:
        try:
            routed = route_days(
                domain,
                (validated_cases, case_features, risk_scores),
                audit_db.connect,
                Path(io_manager.base_dir).joinpath(*key.path),
                partial(io_manager.partition_writer, list(key.path), list(context.partition_keys)),
                partition_days(context),
                run_id=context.run.run_id,
                slice_rows=io_manager.slice_rows,
                warn=context.log.warning,
            )
        except InvalidPolicy as invalid:
            raise Failure(
                description=str(invalid),
                metadata={
                    "problems": MetadataValue.md("\n".join(f"- {p}" for p in invalid.problems))
                },
            ) from invalid
        return _routing_output(routed)

    return [routed_decisions]

"""Routing asset: the domain's versioned policy sends every case to exactly one route."""

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import row_count, slice_ranges
from hitl_gate.core.database import insert_new_rows, replace_partition_slice
from hitl_gate.core.day_files import StagedPartitions
from hitl_gate.core.domain import DomainConfig
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import AuditDatabase
from policies.model import Policy

DECISION_COLUMNS = [
    "domain", "case_id", "partition_date", "event_time", "source_file", "source_sha256",
    "source_row", "contract_version", "contract_digest", "feature_service", "feature_digest",
    "model_name", "model_version", "model_run_id", "model_artifact_digest", "pd", "score",
    "risk_band", "reason_codes", "policy_version", "policy_digest", "route", "route_rule_id",
    "route_reason_code", "rules_fired", "review_queue", "review_priority", "run_id", "decided_at",
    "proposed_route", "route_override", "qa_sample", "qa_probability", "review_deferred",
]  # fmt: skip


def assemble_cases(
    domain: DomainConfig,
    validated_cases: pl.DataFrame | pl.LazyFrame,
    case_features: pl.DataFrame | pl.LazyFrame,
    risk_scores: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """One row per case with inputs, features and scores: what policy conditions can refer to.

    Feature values come from Feast (what the model saw); contract columns that are not
    features come from the validated input. The inputs may be scans of the stored stages:
    then only the joined frame is ever held, not the three inputs beside it.
    """
    validated, features, scores = (f.lazy() for f in (validated_cases, case_features, risk_scores))
    feature_cols = [c for c in features.collect_schema().names() if c != "partition_date"]
    input_cols = [
        c
        for c in validated.collect_schema().names()
        if c not in feature_cols or c == domain.case_id
    ]
    score_cols = [c for c in scores.collect_schema().names() if c != "partition_date"]
    return (
        validated.select(input_cols)
        .join(features.select(feature_cols), on=domain.case_id, how="inner", maintain_order="left")
        .join(scores.select(score_cols), on=domain.case_id, how="inner", maintain_order="left")
        .collect()
    )


def policy_errors(policy: Policy, cases: pl.DataFrame) -> list[str]:
    """Validation problems plus analysis errors (unreachable rules): any of them blocks routing.

    The analysis sees the day's real cases too, so its overlap counts are about real data.
    """
    from policies.analysis import analyse_policy
    from policies.engine import validate_policy

    problems = validate_policy(policy, cases.schema)
    if problems:
        return problems
    analysis = analyse_policy(policy, dict(cases.schema), cases)
    return [f.message for f in analysis.errors]


def load_backlog(
    domain: DomainConfig, audit_db: AuditDatabase, io_manager: PolarsParquetIOManager, first: date
) -> pl.DataFrame:
    """The stored routed rows of cases deferred before `first` and still waiting for review.

    Rows come from their own day's stored partition (exactly as they were routed, never
    re-routed); the audit database says which cases still wait (`review_backlog`).
    """
    from policies.capacity import own_rows
    from policies.control import review_backlog

    with audit_db.connect() as con:
        waiting = review_backlog(con, domain.name, first)
    if waiting.height == 0:
        return pl.DataFrame()
    folder = Path(io_manager.base_dir).joinpath(*stage_key(domain, "routed_decisions").path)
    frames = []
    for (day,), ids in waiting.group_by("partition_date", maintain_order=True):
        path = folder / f"{day}.parquet"
        if not path.exists():
            continue  # a partition removed by hand: nothing to carry, the audit DB still has it
        stored = own_rows(pl.read_parquet(path))
        wanted = stored.get_column(domain.case_id).cast(pl.String).is_in(ids["case_id"])
        frames.append(stored.filter(wanted))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _backlog_end(capacity: pl.DataFrame) -> int:
    """Cases still waiting for review at the end of the run's last day, all queues."""
    if capacity.height == 0:
        return 0
    last = capacity.filter(pl.col("day") == pl.col("day").max())
    return int(last["backlog_after"].sum())


def run_shadow(
    context: AssetExecutionContext,
    domain: DomainConfig,
    cases: pl.DataFrame,
    routed: pl.DataFrame,
    audit_db: AuditDatabase,
    *,
    halted: bool,
    now: datetime,
) -> dict[str, object]:
    """Route the day's cases with the shadow policy, if one is set; store, compare, never act.

    A shadow policy that does not validate on the day's cases is reported in the metadata and
    the log, and the live run goes on: a candidate must never break live routing.
    """
    from policies.control import record_shadow_decisions, shadow_policy
    from policies.shadow import compare_shadow, shadow_decisions

    with audit_db.connect() as con:
        shadow = shadow_policy(con, domain.name)
    if shadow is None:
        return {}
    problems = policy_errors(shadow, cases)
    if problems:
        context.log.warning(f"shadow policy {shadow.version} not run: {problems[0]}")
        return {
            "shadow_policy_version": shadow.version,
            "shadow_error": MetadataValue.md("\n".join(f"- {p}" for p in problems)),
        }
    rows = shadow_decisions(
        shadow, cases, routed, case_id=domain.case_id, domain=domain.name, halted=halted,
        run_id=context.run.run_id, now=now,
    )  # fmt: skip
    with audit_db.connect() as con:
        record_shadow_decisions(con, rows, domain.name, partition_days(context), shadow.digest)
    comparison = compare_shadow(rows)
    return {
        "shadow_policy_version": shadow.version,
        "shadow_policy_digest": shadow.digest,
        "shadow_agreement": comparison.agreement,
        "shadow_newly_auto_approved": comparison.newly_auto_approved,
        "shadow_transitions": markdown_table(comparison.transitions),
    }


def decision_rows(
    domain: DomainConfig, routed: pl.DataFrame, run_id: str, now: datetime
) -> pl.DataFrame:
    """The audit `decisions` rows of routed cases (carried copies left out: a case's decision
    belongs to its own day, recorded once)."""
    from policies.capacity import own_rows

    return own_rows(routed).select(
        pl.lit(domain.name).alias("domain"),
        pl.col(domain.case_id).cast(pl.String).alias("case_id"),
        "partition_date",
        pl.col(domain.event_time).alias("event_time"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_source_sha256").alias("source_sha256"),
        pl.col("_source_row").alias("source_row"),
        pl.col("_contract_version").alias("contract_version"),
        pl.col("_contract_digest").alias("contract_digest"),
        "feature_service", "feature_digest", "model_name", "model_version", "model_run_id",
        "model_artifact_digest", "pd", "score", "risk_band", "reason_codes", "policy_version",
        "policy_digest", "route", "route_rule_id", "route_reason_code", "rules_fired",
        "review_queue", "review_priority",
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("decided_at"),
        "proposed_route", "route_override", "qa_sample", "qa_probability", "review_deferred",
    )  # fmt: skip


def raise_for_policy_errors(policy: Policy, cases: pl.DataFrame) -> None:
    """Stop the step, listing the problems, if the policy does not validate on `cases`."""
    problems = policy_errors(policy, cases)
    if problems:
        raise Failure(
            description=f"policy {policy.version} is invalid and was not applied",
            metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in problems))},
        )


def record_policy_version(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, policy: Policy, now: datetime
) -> None:
    """The policy's text and digest in `policy_versions` (once per digest)."""
    insert_new_rows(
        con,
        "policy_versions",
        pl.DataFrame(
            {
                "policy_digest": [policy.digest],
                "policy_version": [policy.version],
                "domain": [domain.name],
                "owner": [policy.owner],
                "effective_date": [policy.effective_date],
                "policy_text": [policy.text],
                "first_used_at": [now],
            }
        ),
    )


def _routing_output(
    output: pl.DataFrame | StagedPartitions,
    decided: pl.DataFrame,
    policy: Policy,
    origin: str,
    halted: bool,
    backlog: pl.DataFrame,
    capacity: pl.DataFrame,
    extra: dict[str, object],
) -> Output:
    """The step's output with its metadata, computed from `decided` (the routed rows, or for a
    day routed in slices the narrow frame with the route and capacity columns)."""
    from policies.capacity import own_rows

    own = own_rows(decided)
    mix = own.group_by("route").len().sort("route")
    return Output(
        output,
        metadata={
            "rows": own.height,
            "policy_version": policy.version,
            "policy_digest": policy.digest,
            "policy_origin": origin,
            "automation_halted": halted,
            "route_mix": markdown_table(mix),
            **{f"route_{r}": int(n) for r, n in mix.iter_rows()},
            "qa_sampled": int(decided["qa_sample"].sum()),
            "review_deferred": int(own["review_deferred"].sum()),
            "carried_over_in": int(decided["carried_from"].is_not_null().sum()),
            "backlog_from_earlier_days": backlog.height,
            "review_backlog_end": _backlog_end(capacity),
            "expected_backlog_days": float(capacity["backlog_days"].max() or 0),
            "review_capacity": markdown_table(capacity, max_rows=20),
            **extra,
        },
    )


def build_routing_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `routed_decisions` asset of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "routed_decisions"),
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
        from hitl_gate.review.settings import review_settings
        from policies.control import halt_state, policy_in_force, shadow_policy
        from policies.decide import capacity_report, decide, with_queue_capacity

        with audit_db.connect() as con:
            in_force = policy_in_force(con, domain)
            halt = halt_state(con, domain.name)
            with_shadow = shadow_policy(con, domain.name) is not None
        settings = review_settings(domain)
        policy = with_queue_capacity(
            in_force.policy,
            {q: s.daily_capacity for q, s in settings.queues.items()} if settings else {},
        )
        if halt.halted:
            context.log.warning(
                f"automation of {domain.name} is HALTED by {halt.actor} ({halt.reason}): "
                "every automatic route goes to human review"
            )
        backlog = load_backlog(domain, audit_db, io_manager, min(partition_days(context)))
        ranges = slice_ranges(row_count(validated_cases), io_manager.slice_rows)
        # A shadow policy compares whole days of cases, so a day with one is routed whole.
        if len(ranges) > 1 and not with_shadow:
            from assets.sliced_routing import route_in_slices

            routed = route_in_slices(
                context, domain, policy, (validated_cases, case_features, risk_scores),
                audit_db, io_manager, ranges, halted=halt.halted, backlog=backlog,
            )  # fmt: skip
            return _routing_output(
                routed.output, routed.decided, policy, in_force.origin, halt.halted,
                backlog, capacity_report(policy, routed.decided, backlog), {"slices": len(ranges)},
            )  # fmt: skip
        cases = assemble_cases(domain, validated_cases, case_features, risk_scores)
        raise_for_policy_errors(policy, cases)
        routed = decide(policy, cases, domain.case_id, halted=halt.halted, backlog=backlog)
        now = datetime.now(UTC)
        shadow_metadata = run_shadow(
            context, domain, cases, routed, audit_db, halted=halt.halted, now=now
        )
        del cases  # every column of it is in `routed`: one day-sized frame less from here on
        decisions = decision_rows(domain, routed, context.run.run_id, now)
        with audit_db.connect() as con:
            record_policy_version(con, domain, policy, now)
            replace_partition_slice(
                con, "decisions", decisions, domain.name, partition_days(context)
            )
        return _routing_output(
            routed, routed, policy, in_force.origin, halt.halted, backlog,
            capacity_report(policy, routed, backlog), shadow_metadata,
        )  # fmt: skip

    return [routed_decisions]

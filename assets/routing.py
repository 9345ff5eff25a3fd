"""Routing asset: the domain's versioned policy sends every case to exactly one route."""

from datetime import UTC, datetime

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.audit.store import insert_new_rows, replace_partition_slice
from hitl_gate.domain import DomainConfig
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
    validated_cases: pl.DataFrame,
    case_features: pl.DataFrame,
    risk_scores: pl.DataFrame,
) -> pl.DataFrame:
    """One row per case with inputs, features and scores: what policy conditions can refer to.

    Feature values come from Feast (what the model saw); contract columns that are not
    features come from the validated input.
    """
    feature_cols = [c for c in case_features.columns if c != "partition_date"]
    input_cols = [
        c for c in validated_cases.columns if c not in feature_cols or c == domain.case_id
    ]
    score_cols = [c for c in risk_scores.columns if c != "partition_date"]
    return (
        validated_cases.select(input_cols)
        .join(case_features.select(feature_cols), on=domain.case_id, how="inner")
        .join(risk_scores.select(score_cols), on=domain.case_id, how="inner")
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
        validated_cases: pl.DataFrame,
        case_features: pl.DataFrame,
        risk_scores: pl.DataFrame,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        from hitl_gate.policy_control import halt_state, policy_in_force
        from hitl_gate.review.settings import review_settings
        from policies.decide import capacity_report, decide, with_queue_capacity

        cases = assemble_cases(domain, validated_cases, case_features, risk_scores)
        with audit_db.connect() as con:
            in_force = policy_in_force(con, domain)
            halt = halt_state(con, domain.name)
        settings = review_settings(domain)
        policy = with_queue_capacity(
            in_force.policy,
            {q: s.daily_capacity for q, s in settings.queues.items()} if settings else {},
        )
        problems = policy_errors(policy, cases)
        if problems:
            raise Failure(
                description=f"policy {policy.version} is invalid and was not applied",
                metadata={"problems": MetadataValue.md("\n".join(f"- {p}" for p in problems))},
            )
        if halt.halted:
            context.log.warning(
                f"automation of {domain.name} is HALTED by {halt.actor} ({halt.reason}): "
                "every automatic route goes to human review"
            )
        routed = decide(policy, cases, domain.case_id, halted=halt.halted)
        capacity = capacity_report(policy, routed)
        now = datetime.now(UTC)
        decisions = routed.select(
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
            pl.lit(context.run.run_id).alias("run_id"),
            pl.lit(now).alias("decided_at"),
            "proposed_route", "route_override", "qa_sample", "qa_probability", "review_deferred",
        )  # fmt: skip
        with audit_db.connect() as con:
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
            replace_partition_slice(
                con, "decisions", decisions, domain.name, partition_days(context)
            )
        mix = routed.group_by("route").len().sort("route")
        return Output(
            routed,
            metadata={
                "rows": routed.height,
                "policy_version": policy.version,
                "policy_digest": policy.digest,
                "policy_origin": in_force.origin,
                "automation_halted": halt.halted,
                "route_mix": markdown_table(mix),
                **{f"route_{r}": int(n) for r, n in mix.iter_rows()},
                "qa_sampled": int(routed["qa_sample"].sum()),
                "review_deferred": int(routed["review_deferred"].sum()),
                "expected_backlog_days": float(capacity["backlog_days"].max() or 0),
                "review_capacity": markdown_table(capacity, max_rows=20),
            },
        )

    return [routed_decisions]

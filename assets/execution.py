"""Execution and audit assets: final decisions acted on exactly once, and the day's accounting."""

import os
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    Output,
)

from assets.common import collect_columns, markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.audit.seal import seal_run
from hitl_gate.core.database import insert_new_rows, query_frame, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from hitl_gate.execution.adverse_action import adverse_actions
from hitl_gate.execution.outcomes import ingest_outcomes
from hitl_gate.review.intake.conflicts import reversal_requests
from pipelines.resources import AuditDatabase, ExecutionOutbox, LandingZone

AUTOMATIC_ACTIONS = {"auto_approve": "approve", "auto_decline": "decline"}
REVIEW_ACTIONS = ("approve", "decline")


def final_actions(
    routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str, *, halted: bool = False
) -> pl.DataFrame:
    """Combine automatic routes and reviewer verdicts into one action per case.

    Only two things are ever executed: an automatic route, or a single final reviewer verdict
    that is an action (approve/decline). Everything else is held, never executed:
    `pending_review` (no verdict yet), `conflict` (reviewers disagree on the case) and `held`
    (a route that is neither automatic nor review, e.g. halted, or a verdict that is not an
    action, e.g. escalate). A verdict never overrides an automatic route. While automation is
    halted (kill switch), automatic routes are `held` too, even when they were routed before
    the halt; reviewers' verdicts still execute.
    """
    per_case = verdicts.group_by("case_id").agg(
        pl.col("verdict").first(),
        pl.col("reviewer_id").first(),
        pl.col("verdict").n_unique().alias("verdict_variants"),
        *(
            [pl.col("verdict_reason_code").first()]
            if "verdict_reason_code" in verdicts.columns
            else []
        ),
    )
    automatic = pl.col("route").replace_strict(AUTOMATIC_ACTIONS, default=None)
    reviewed = pl.col("route") == "human_review"
    return (
        routed.select(
            pl.col(case_id).cast(pl.String).alias("case_id"),
            "partition_date",
            "route",
            "policy_version",
            "model_version",
            "reason_codes",
        )
        .join(per_case, on="case_id", how="left")
        .with_columns(
            pl.when(reviewed)
            .then(pl.lit("reviewer"))
            .otherwise(pl.lit("policy"))
            .alias("decided_by"),
            pl.when(reviewed & pl.col("verdict").is_null())
            .then(pl.lit("pending_review"))
            .when(reviewed & (pl.col("verdict_variants") > 1))
            .then(pl.lit("conflict"))
            .when(reviewed & pl.col("verdict").is_in(list(REVIEW_ACTIONS)))
            .then(pl.lit("executed"))
            .when(~reviewed & automatic.is_not_null() & ~pl.lit(halted))
            .then(pl.lit("executed"))
            .otherwise(pl.lit("held"))
            .alias("status"),
        )
        .with_columns(
            pl.when(pl.col("status") != "executed")
            .then(pl.lit(None, pl.String))
            .when(reviewed)
            .then(pl.col("verdict"))
            .otherwise(automatic)
            .alias("action")
        )
    )


def keep_executed(actions: pl.DataFrame, executed: pl.DataFrame) -> pl.DataFrame:
    """Executed decisions are final: a case already in `executions` keeps its executed action.

    Re-routing a day that was executed before (another policy in force, a rollback, the kill
    switch) may give a case another route; the new route is recorded in `decisions`, but the
    case is never re-executed, held or sent back to pending. Its status, action and decider
    come from the stored execution, so the day's accounting counts it once, as executed.
    """
    if executed.height == 0:
        return actions
    done = executed.select(
        "case_id",
        pl.col("action").alias("__action"),
        pl.col("decided_by").alias("__decided_by"),
        pl.col("reviewer_id").alias("__reviewer_id"),
    )
    was = pl.col("__action").is_not_null()
    return (
        actions.join(done, on="case_id", how="left")
        .with_columns(
            pl.when(was).then(pl.lit("executed")).otherwise("status").alias("status"),
            pl.when(was).then("__action").otherwise("action").alias("action"),
            pl.when(was).then("__decided_by").otherwise("decided_by").alias("decided_by"),
            pl.when(was).then("__reviewer_id").otherwise("reviewer_id").alias("reviewer_id"),
        )
        .drop("__action", "__decided_by", "__reviewer_id")
    )


def build_execution_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `final_decisions` and `audit_lineage` assets of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "final_decisions"),
        ins={
            "routed_decisions": upstream(domain, "routed_decisions"),
            "reviewer_verdicts": upstream(domain, "reviewer_verdicts"),
        },
        description=(
            "Automatic routes and final reviewer verdicts executed exactly once per case into the "
            "outbox (audit table `executions` and a Parquet file per day); cases awaiting review "
            "are never executed."
        ),
        kinds={"duckdb", "parquet"},
    )
    def final_decisions(
        context: AssetExecutionContext,
        routed_decisions: pl.LazyFrame,
        reviewer_verdicts: pl.DataFrame,
        audit_db: AuditDatabase,
        outbox: ExecutionOutbox,
    ) -> Output[pl.DataFrame]:
        from policies.capacity import own_rows
        from policies.control import halt_state

        days = partition_days(context)
        with audit_db.connect() as con:
            halted = halt_state(con, domain.name).halted
            earlier = query_frame(
                con,
                "SELECT case_id, action, decided_by, reviewer_id FROM executions "
                "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, days],
            )
        # A deferred case carried into a later day's review pool is executed and accounted
        # for in its own day (its batch names that day), never in the day it was carried to.
        routed = own_rows(collect_columns(routed_decisions, _routed_columns_read(domain.case_id)))
        actions = keep_executed(
            final_actions(routed, reviewer_verdicts, domain.case_id, halted=halted),
            earlier,
        )
        now = datetime.now(UTC)
        executable = pl.col("status") == "executed"
        to_execute = actions.filter(
            executable & ~pl.col("case_id").is_in(earlier["case_id"].implode())
        ).select(
            pl.lit(domain.name).alias("domain"),
            "case_id",
            "partition_date",
            "action",
            "decided_by",
            pl.when(pl.col("decided_by") == "reviewer")
            .then(pl.col("reviewer_id"))
            .alias("reviewer_id"),
            "route",
            "policy_version",
            "model_version",
            "reason_codes",
            pl.lit(context.run.run_id).alias("run_id"),
            pl.lit(now).alias("executed_at"),
        )
        outbox_dir = outbox.folder(domain.name)
        with audit_db.connect() as con:
            newly = insert_new_rows(con, "executions", to_execute)
            executed = query_frame(
                con,
                "SELECT * FROM executions WHERE domain = ? "
                "AND partition_date IN (SELECT unnest(?::DATE[])) ORDER BY case_id",
                [domain.name, days],
            )
            # From the table, not from this run: a run killed after the insert still gets them.
            notices = adverse_actions(
                executed.join(
                    _reason_columns(routed, reviewer_verdicts, domain.case_id),
                    on="case_id",
                    how="left",
                ),
                domain,
                _policy_reason_texts(domain),
            ).with_columns(
                pl.lit(context.run.run_id).alias("run_id"), pl.lit(now).alias("issued_at")
            )
            insert_new_rows(con, "adverse_actions", notices)
            reversals = reversal_requests(con, domain.name)
        for day in days:
            _write_outbox(executed.filter(pl.col("partition_date") == day), outbox_dir, day)
        if reversals.height:  # never executed: downstream systems decide how to reverse
            _write_parquet(reversals, outbox_dir / "reversal_requests.parquet")
        counts = actions.group_by("status", "action").len().sort("status", "action")
        return Output(
            actions,
            metadata={
                "executed_now": newly,
                "executed_total": executed.height,
                "pending_review": int((actions["status"] == "pending_review").sum()),
                "held_or_conflict": int(actions["status"].is_in(["held", "conflict"]).sum()),
                "adverse_action_notices": notices.height,
                "reversal_requests": reversals.height,
                "outcomes": markdown_table(counts),
                "outbox": MetadataValue.path(str(outbox_dir)),
            },
        )

    @daily_stage_asset(
        domain,
        stage_key(domain, "audit_lineage"),
        ins={"final_decisions": upstream(domain, "final_decisions")},
        description=(
            "The day's accounting in the audit database: rows read = quarantined + executed + "
            "pending review, per partition (table `partition_accounting`, view `case_trace`)."
        ),
        kinds={"duckdb"},
    )
    def audit_lineage(
        context: AssetExecutionContext,
        final_decisions: pl.LazyFrame,
        audit_db: AuditDatabase,
        landing: LandingZone,
    ) -> Output[pl.DataFrame]:
        days = partition_days(context)
        statuses = collect_columns(final_decisions, ["partition_date", "status"])
        now = datetime.now(UTC)
        with audit_db.connect() as con:
            accounting = query_frame(
                con,
                """
                WITH days AS (SELECT unnest(?::DATE[]) AS partition_date),
                files AS (
                    SELECT partition_date, sum(rows_read) AS rows_read,
                           sum(rows_quarantined) AS rows_quarantined
                    FROM input_files WHERE domain = ? GROUP BY ALL),
                ex AS (SELECT partition_date, count(*) AS executed FROM executions
                       WHERE domain = ? GROUP BY ALL)
                SELECT ? AS domain, days.partition_date,
                       coalesce(files.rows_read, 0)::BIGINT AS rows_read,
                       coalesce(files.rows_quarantined, 0)::BIGINT AS rows_quarantined,
                       coalesce(ex.executed, 0)::BIGINT AS executed
                FROM days LEFT JOIN files USING (partition_date) LEFT JOIN ex USING (partition_date)
                ORDER BY days.partition_date
                """,
                [days, domain.name, domain.name, domain.name],
            )
            pending = (
                statuses.filter(pl.col("status") != "executed")
                .group_by("partition_date")
                .len("pending_review")
            )
            accounting = (
                accounting.join(pending, on="partition_date", how="left")
                .with_columns(pl.col("pending_review").fill_null(0).cast(pl.Int64))
                .with_columns(
                    (
                        pl.col("rows_read")
                        == pl.col("rows_quarantined")
                        + pl.col("executed")
                        + pl.col("pending_review")
                    ).alias("balanced"),
                    pl.lit(context.run.run_id).alias("run_id"),
                    pl.lit(now).alias("recorded_at"),
                )
            )
            replace_partition_slice(con, "partition_accounting", accounting, domain.name, days)
            outcomes_added, outcome_errors = ingest_outcomes(
                con, domain, landing.path / domain.outcomes_subdir, context.run.run_id
            )
            for error in outcome_errors:
                context.log.warning(f"outcome file skipped: {error}")
            sealed = seal_run(
                con,
                context.run.run_id,
                audit_db.signing_key(),
                audit_db.checkpoints,
                memory_limit=audit_db.seal_memory_limit,
            )
        totals = accounting.select(
            pl.col("rows_read", "rows_quarantined", "executed", "pending_review").sum()
        ).row(0, named=True)
        return Output(
            accounting,
            metadata={
                **{k: int(v) for k, v in totals.items()},
                "unbalanced_days": int((~accounting["balanced"]).sum()),
                "outcomes_recorded": outcomes_added,
                "audit_entries_appended": sealed.appended,
                "audit_rows_canonicalised": sealed.canonicalised,
                "audit_head_seq": sealed.checkpoint["last_seq"] if sealed.checkpoint else -1,
                "audit_database": MetadataValue.path(audit_db.database),
            },
        )

    return [final_decisions, audit_lineage]


def _write_outbox(frame: pl.DataFrame, folder: Path, day: date) -> None:
    """Rewrite a day's outbox file from the executions table (idempotent by construction)."""
    _write_parquet(frame, folder / f"{day.isoformat()}.parquet")


def _write_parquet(frame: pl.DataFrame, target: Path) -> None:
    """Replace an outbox file atomically: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, target)


def _routed_columns_read(case_id: str) -> list[str]:
    """The routed columns `final_actions`, `_reason_columns` and `own_rows` read (of 87)."""
    from policies.capacity import CARRIED_FROM

    return [case_id, "partition_date", "route", "policy_version", "model_version",
            "reason_codes", "route_reason_code", CARRIED_FROM]  # fmt: skip


def _optional(frame: pl.DataFrame, *names: str) -> list[str]:
    """The subset of `names` that `frame` has (verdict frames differ between issues)."""
    return [n for n in names if n in frame.columns]


def _reason_columns(routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str) -> pl.DataFrame:
    """Per case: the policy's reason code for its route and the reviewer's reason code."""
    reasons = routed.select(
        pl.col(case_id).cast(pl.String).alias("case_id"),
        *_optional(routed, "route_reason_code"),
    )
    reviewer = verdicts.select("case_id", *_optional(verdicts, "verdict_reason_code"))
    return reasons.join(reviewer.unique("case_id"), on="case_id", how="left")


def _policy_reason_texts(domain: DomainConfig) -> dict[str, str]:
    """Reason code -> rule text of the domain's policy (auto-decline reasons in plain words)."""
    from policies.engine import load_policy

    policy = load_policy(domain.policy_path)
    return {rule.reason_code: " ".join(rule.text.split()) for rule in reversed(policy.rules)}

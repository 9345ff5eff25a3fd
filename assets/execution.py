"""Execution and audit assets: final decisions acted on exactly once, and the day's accounting."""

import os
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MetadataValue,
    Output,
    asset,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_partitions, partition_days
from hitl_gate.audit.store import insert_new_rows, query_frame, replace_partition_slice
from hitl_gate.domain import DomainConfig
from pipelines.resources import AuditDatabase, ExecutionOutbox

AUTOMATIC_ACTIONS = {"auto_approve": "approve", "auto_decline": "decline"}


def final_actions(
    routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str, *, halted: bool = False
) -> pl.DataFrame:
    """Combine automatic routes and reviewer verdicts into one action per case.

    A case routed to review without a verdict stays `pending_review` and is never executed.
    While automation is halted (kill switch), automatic routes are `held`, not executed, even
    when they were routed before the halt; reviewers' verdicts still execute.
    """
    return (
        routed.select(
            pl.col(case_id).cast(pl.String).alias("case_id"),
            "partition_date",
            "route",
            "policy_version",
            "model_version",
            "reason_codes",
        )
        .join(verdicts.select("case_id", "verdict", "reviewer_id"), on="case_id", how="left")
        .with_columns(
            pl.when(pl.col("route") == "human_review")
            .then(pl.col("verdict"))
            .otherwise(pl.col("route").replace_strict(AUTOMATIC_ACTIONS, default=None))
            .alias("action"),
            pl.when(pl.col("route") == "human_review")
            .then(pl.lit("reviewer"))
            .otherwise(pl.lit("policy"))
            .alias("decided_by"),
        )
        .with_columns(
            pl.when(pl.col("action").is_null())
            .then(pl.lit("pending_review"))
            .when(pl.lit(halted) & (pl.col("decided_by") == "policy"))
            .then(pl.lit("held"))
            .otherwise(pl.lit("executed"))
            .alias("status")
        )
    )


def build_execution_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `final_decisions` and `audit_lineage` assets of one domain."""

    @asset(
        key=stage_key(domain, "final_decisions"),
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
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
        routed_decisions: pl.DataFrame,
        reviewer_verdicts: pl.DataFrame,
        audit_db: AuditDatabase,
        outbox: ExecutionOutbox,
    ) -> Output[pl.DataFrame]:
        from hitl_gate.policy_control import halt_state

        with audit_db.connect() as con:
            halted = halt_state(con, domain.name).halted
        actions = final_actions(routed_decisions, reviewer_verdicts, domain.case_id, halted=halted)
        now = datetime.now(UTC)
        to_execute = actions.filter(pl.col("status") == "executed").select(
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
        days = partition_days(context)
        outbox_dir = outbox.folder(domain.name)
        with audit_db.connect() as con:
            newly = insert_new_rows(con, "executions", to_execute)
            executed = query_frame(
                con,
                "SELECT * FROM executions WHERE domain = ? "
                "AND partition_date IN (SELECT unnest(?::DATE[])) ORDER BY case_id",
                [domain.name, days],
            )
        for day in days:
            _write_outbox(executed.filter(pl.col("partition_date") == day), outbox_dir, day)
        counts = actions.group_by("status", "action").len().sort("status", "action")
        return Output(
            actions,
            metadata={
                "executed_now": newly,
                "executed_total": executed.height,
                "pending_review": int((actions["status"] == "pending_review").sum()),
                "held_by_halt": int((actions["status"] == "held").sum()),
                "outcomes": markdown_table(counts),
                "outbox": MetadataValue.path(str(outbox_dir)),
            },
        )

    @asset(
        key=stage_key(domain, "audit_lineage"),
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
        ins={"final_decisions": upstream(domain, "final_decisions")},
        description=(
            "The day's accounting in the audit database: rows read = quarantined + executed + "
            "pending review, per partition (table `partition_accounting`, view `case_trace`)."
        ),
        kinds={"duckdb"},
    )
    def audit_lineage(
        context: AssetExecutionContext,
        final_decisions: pl.DataFrame,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        days = partition_days(context)
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
            pending = (  # held (kill switch) cases wait like cases pending review
                final_decisions.filter(pl.col("status").is_in(["pending_review", "held"]))
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
        totals = accounting.select(
            pl.col("rows_read", "rows_quarantined", "executed", "pending_review").sum()
        ).row(0, named=True)
        return Output(
            accounting,
            metadata={
                **{k: int(v) for k, v in totals.items()},
                "unbalanced_days": int((~accounting["balanced"]).sum()),
                "audit_database": MetadataValue.path(audit_db.database),
            },
        )

    return [final_decisions, audit_lineage]


def _write_outbox(frame: pl.DataFrame, folder: Path, day: date) -> None:
    """Rewrite a day's outbox file from the executions table (idempotent by construction)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{day.isoformat()}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, target)

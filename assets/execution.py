"""Execution and audit assets: final decisions acted on exactly once, and the day's accounting."""

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    Output,
    ResourceParam,
)

from assets.common import collect_columns, markdown_metadata, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import read_slices, row_count, slice_ranges
from hitl_gate.execution.accounting import account_days
from hitl_gate.execution.execute import execute_days
from hitl_gate.execution.final_actions import routed_columns
from hitl_gate.execution.sealed_inputs import input_sealer, output_sealer
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import AuditDatabase, ExecutionOutbox, LandingZone


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
        reviewer_verdicts: pl.LazyFrame,
        audit_db: AuditDatabase,
        outbox: ExecutionOutbox,
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output:
        outbox_dir = outbox.folder(domain.name)
        # Slices of `slice_rows` routed cases: executed, and their actions written, one at a time;
        # the verdicts a scan, read per slice.
        ranges = slice_ranges(row_count(routed_decisions), io_manager.slice_rows)
        sliced = len(ranges) > 1
        signing = (
            audit_db.signing_key(), audit_db.checkpoints, audit_db.witness(), context.run.run_id
        )  # fmt: skip
        bounds = (audit_db.seal_memory_limit, audit_db.seal_rows)
        with output_sink(io_manager, context, context.asset_key, sliced) as sink:
            done = execute_days(
                domain,
                read_slices(routed_decisions, routed_columns(domain.case_id), ranges),
                reviewer_verdicts,
                audit_db.connect,
                outbox_dir,
                partition_days(context),
                run_id=context.run.run_id,
                sink=sink,
                page_rows=io_manager.slice_rows,
                seal_inputs=input_sealer(*signing, *bounds),
                # The output seal runs on the step's connection, under the seal's limit.
                seal_outputs=output_sealer(*signing, *bounds),
            )
        for case_id, reason in list(done.refused.items())[:20]:
            context.log.error(f"execution refused for {case_id}: {reason}")
        counts = done.outcomes
        status = counts["status"]
        return Output(
            done.actions,
            metadata={
                "executed_now": done.executed_now,
                "executed_total": done.executed_total,
                "pending_review": int(counts.filter(status == "pending_review")["len"].sum()),
                "held_or_conflict": int(
                    counts.filter(status.is_in(["held", "conflict"]))["len"].sum()
                ),
                "adverse_action_notices": done.notices,
                "reversal_requests": done.reversals.height,
                "refused_unsealed": len(done.refused),
                "outcomes": markdown_metadata(counts),
                "outbox": MetadataValue.path(str(outbox_dir)),
                "slices": len(ranges),
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
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output[pl.DataFrame]:
        closed = account_days(
            domain,
            collect_columns(final_decisions, ["partition_date", "status"]),
            audit_db.connect,
            landing.path / domain.outcomes_subdir,
            partition_days(context),
            run_id=context.run.run_id,
            signing_key=audit_db.signing_key(),
            checkpoints=audit_db.checkpoints,
            seal_memory_limit=audit_db.seal_memory_limit,
            witness=audit_db.witness(),
            replica=audit_db.replica(),
            seal_rows=audit_db.seal_rows,
            segments=audit_db.segments(),
            slice_rows=io_manager.slice_rows,
        )
        for error in closed.outcome_errors:  # a file skipped, or rows of it rejected
            context.log.warning(f"outcome file: {error}")
        accounting, sealed = closed.accounting, closed.sealed
        totals = accounting.select(
            pl.col("rows_read", "rows_quarantined", "executed", "pending_review").sum()
        ).row(0, named=True)
        return Output(
            accounting,
            metadata={
                **{k: int(v) for k, v in totals.items()},
                "unbalanced_days": int((~accounting["balanced"]).sum()),
                "outcomes_recorded": closed.outcomes_recorded,
                "audit_entries_appended": sealed.appended,
                "audit_rows_canonicalised": sealed.canonicalised,
                "audit_head_seq": sealed.checkpoint["last_seq"] if sealed.checkpoint else -1,
                "audit_database": MetadataValue.path(audit_db.database),
            },
        )

    return [final_decisions, audit_lineage]

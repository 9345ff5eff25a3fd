"""Review assets: batches exported for reviewers, and the verdicts they return."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    Output,
)

from assets.common import markdown_metadata, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import AuditDatabase, ReviewWorkspace


def run_id_of(context: AssetExecutionContext) -> str:
    """The run's id, read where it exists both in a job run and when a test invokes the asset
    directly (`context.run` is absent there; `context.run_id` is deprecated by Dagster)."""
    return context.op_execution_context.run_id


def gold_source_rows(domain: DomainConfig, review: ReviewWorkspace) -> pl.LazyFrame | None:
    """Past routed rows to seed gold cases from, only when a queue seeds them (rate > 0)."""
    from hitl_gate.review.settings import review_settings

    settings = review_settings(domain)
    if settings is None or not any(q.gold_rate > 0 for q in settings.queues.values()):
        return None
    return review.past_routed(domain.name)


def build_review_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `review_batches` and `reviewer_verdicts` assets of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "review_batches"),
        ins={"routed_decisions": upstream(domain, "routed_decisions")},
        description=(
            "Cases routed to human review, exported per queue as signed batches (XLSX with "
            "drop-downs, CSV, manifest.json), each assigned to a named reviewer and written "
            "to that reviewer's own folder; cases nobody can take stay queued, counted."
        ),
        kinds={"excel", "csv"},
    )
    def review_batches(
        context: AssetExecutionContext,
        routed_decisions: pl.LazyFrame,
        review: ReviewWorkspace,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        from hitl_gate.review.export.days import export_review_days
        from hitl_gate.review.export.sealing import pipeline_identity

        exported = export_review_days(
            audit_db.connect,
            routed_decisions,
            partition_days(context),
            domain=domain,
            batches_dir=review.batches_dir,
            key=review.signing_key(),
            created_at=datetime.now(UTC),
            run_id=run_id_of(context),
            pipeline_recipient=str(pipeline_identity(Path(review.secrets_dir)).to_public()),
            gold_rows=gold_source_rows(domain, review),
        )
        for reason, cases in exported.unassigned_reasons().items():
            context.log.warning(f"{cases} case(s) left queued, nobody assigned: {reason}")
        # At most 20 folders by name: a ranged run's metadata is copied into the event of each
        # of its days, and a quarter's full list (about 300) made a demo run's events 4.6 MB
        # heavier; the rest are under `review_folder` and in the `review_batches` table.
        folders = pl.DataFrame(
            {"batch_folder": [str(batch.folder) for _, batch in exported.batches]},
            schema={"batch_folder": pl.String},
        )
        return Output(
            exported.membership(),
            metadata={
                "batches": len(exported.batches),
                "cases_for_review": exported.cases_for_review,
                "cases_unassigned": exported.cases_unassigned,
                "unassigned_reasons": MetadataValue.json(exported.unassigned_reasons()),
                "review_folder": MetadataValue.path(str(review.batches_dir)),
                "batch_folders": markdown_metadata(folders, max_rows=20),
            },
        )

    @daily_stage_asset(
        domain,
        stage_key(domain, "reviewer_verdicts"),
        ins={
            "review_batches": upstream(domain, "review_batches"),
            "routed_decisions": upstream(domain, "routed_decisions"),
        },
        description=(
            "Verdicts returned by reviewers: each file's SSH signature is verified against the "
            "people registry and the batch's assignee, the file is validated against its "
            "signed batch, recorded exactly once by content hash and archived. Escalated cases "
            "are then re-exported as batches of their escalation queue."
        ),
        kinds={"duckdb"},
    )
    def reviewer_verdicts(
        context: AssetExecutionContext,
        review_batches: pl.DataFrame,
        routed_decisions: pl.LazyFrame,
        review: ReviewWorkspace,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        from hitl_gate.review.intake.days import ReviewFolders, take_in_verdicts
        from hitl_gate.review.intake.sealing import intake_sealer

        folders = ReviewFolders(
            review.batches_dir, review.inbox_dir, review.archive_dir, review.intake_limits()
        )
        with audit_db.connect() as con:
            intake = take_in_verdicts(
                con,
                routed_decisions,
                partition_days(context),
                domain=domain,
                folders=folders,
                key=review.signing_key(),
                run_id=run_id_of(context),
                now=datetime.now(UTC),
                seal=intake_sealer(
                    audit_db.signing_key(),
                    audit_db.checkpoints,
                    audit_db.witness(),
                    run_id_of(context),
                    audit_db.seal_memory_limit,
                ),
            )
        for line in intake.recovery.recovered:
            context.log.info(line)
        for line in intake.recovery.refused:
            context.log.error(line)
        if intake.seal_refusal is not None:
            context.log.error(intake.seal_refusal)
        for outcome in intake.outcomes:  # messages are capped per file (IntakeLimits)
            for message in outcome.messages:
                context.log.warning(message)
        return Output(
            intake.verdicts,
            metadata={
                "verdicts_in_partition": intake.verdicts.height,
                "files_processed": len(intake.outcomes),
                "rows_rejected": int(sum(o.rejected for o in intake.outcomes)),
                "escalation_batches": MetadataValue.md(
                    "\n".join(
                        f"- `{b.batch_id}` ({len(b.case_ids)} cases)" for b in intake.escalated
                    )
                    or "_none_"
                ),
                "files": markdown_metadata(intake.files()),
            },
        )

    return [review_batches, reviewer_verdicts]

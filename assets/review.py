"""Review assets: batches exported for reviewers, and the verdicts they return."""

from datetime import UTC, date, datetime

import duckdb
import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    Output,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.database import query_frame, replace_partition_slice, transaction
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import AuditDatabase, ReviewWorkspace


def _manifest_context(cases: pl.DataFrame) -> dict[str, str]:
    """The policy and model versions a batch's cases were routed with (signed into it)."""
    first = cases.row(0, named=True)
    names = ("policy_version", "policy_digest", "model_name", "model_version", "feature_service")
    return {name: first[name] for name in names}


def _first_row_of_day(routed: pl.LazyFrame, day: date) -> pl.DataFrame | None:
    """The first stored routed row of `day` (None if it has none), read by its position.

    `filter(day).head(1)` on the scan decoded every column of the whole file (2.2 GB at 3M
    cases); finding the position reads one column, and the one-row slice one row group.
    """
    position = routed.select((pl.col("partition_date") == day).arg_true().first()).collect()
    index = position.item()
    return None if index is None else routed.slice(index, 1).collect()


def _rule_texts(con: duckdb.DuckDBPyConnection, domain: DomainConfig) -> dict[str, str]:
    from policies.control import policy_in_force

    return {rule.id: rule.text for rule in policy_in_force(con, domain).policy.rules}


def _review_groups(
    to_review: pl.DataFrame, days: list[date]
) -> list[tuple[date, date, pl.DataFrame]]:
    """Per export day, its cases grouped by the day their batch is named after.

    That is the case's own day, except for a deferred case carried into this day's review pool
    (`carried_from`, see policies/capacity.py): its batch names the day it came from, so its
    verdict is executed and accounted for there, like every case of that day.
    """
    origin = pl.col("partition_date")
    if "carried_from" in to_review.columns:
        origin = pl.coalesce("carried_from", "partition_date")
    groups = []
    for day in days:
        todays = to_review.filter(pl.col("partition_date") == day)
        todays = todays.with_columns(origin.alias("__origin"))
        for (batch_day,), part in todays.group_by("__origin", maintain_order=True):
            groups.append((day, batch_day, part.drop("__origin")))
    return groups


def build_review_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `review_batches` and `reviewer_verdicts` assets of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "review_batches"),
        ins={"routed_decisions": upstream(domain, "routed_decisions")},
        description=(
            "Cases routed to human review, exported per queue as signed batches (XLSX with "
            "drop-downs, CSV, manifest.json) under the review folder."
        ),
        kinds={"excel", "csv"},
    )
    def review_batches(
        context: AssetExecutionContext,
        routed_decisions: pl.LazyFrame,
        review: ReviewWorkspace,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        from hitl_gate.review.export.batches import export_review_batches
        from hitl_gate.review.settings import review_settings

        with audit_db.connect() as con:
            rule_texts = _rule_texts(con, domain)
            executed = query_frame(
                con,
                "SELECT case_id FROM executions WHERE domain = ? AND decided_by = 'policy' "
                "AND partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, partition_days(context)],
            )["case_id"]
        # Cases beyond a queue's daily capacity wait (deferred): never auto-approved, not sent.
        deferred = (
            pl.col("review_deferred")
            if "review_deferred" in routed_decisions.collect_schema().names()
            else False
        )
        # Executed automatically before a day was re-routed to review: final, not sent
        # (docs/policies.md). Reviewed cases are re-exported as before, so re-runs match.
        done = pl.col(domain.case_id).cast(pl.String).is_in(executed)
        # Only the rows sent for review are read (about a tenth of the day at 1M cases).
        to_review = routed_decisions.filter(
            (pl.col("route") == "human_review") & ~deferred & ~done
        ).collect()
        key = review.signing_key()
        now = datetime.now(UTC)
        batches, links = [], []
        for day, batch_day, todays in _review_groups(to_review, partition_days(context)):
            for batch in export_review_batches(
                todays,
                domain=domain,
                batches_dir=review.batches_dir,
                key=key,
                partition_date=batch_day,
                created_at=now,
                context=_manifest_context(todays),
                rule_texts=rule_texts,
                settings=review_settings(domain),
            ):
                batches.append((day, batch))
                links.append(batch.folder)
        batch_rows = pl.DataFrame(
            {
                "batch_id": [b.batch_id for _, b in batches],
                "domain": domain.name,
                "partition_date": [d for d, _ in batches],
                "queue": [b.queue for _, b in batches],
                "folder": [str(b.folder) for _, b in batches],
                "case_count": [len(b.case_ids) for _, b in batches],
                "created_at": [b.created_at for _, b in batches],
                "due_at": [b.due_at for _, b in batches],
                "manifest_sha256": [b.manifest_sha256 for _, b in batches],
                "run_id": context.run.run_id,
            },
            schema_overrides={"partition_date": pl.Date, "case_count": pl.Int32},
        )
        membership = pl.DataFrame(
            {
                "batch_id": [b.batch_id for _, b in batches for _ in b.case_ids],
                "partition_date": [d for d, b in batches for _ in b.case_ids],
                "case_id": [c for _, b in batches for c in b.case_ids],
            },
            schema={"batch_id": pl.String, "partition_date": pl.Date, "case_id": pl.String},
        )
        days = partition_days(context)
        with audit_db.connect() as con:
            with transaction(con):
                con.execute(
                    "DELETE FROM review_batch_cases WHERE domain = ? AND batch_id IN "
                    "(SELECT batch_id FROM review_batches WHERE domain = ? "
                    "AND partition_date IN (SELECT unnest(?::DATE[])))",
                    [domain.name, domain.name, days],
                )
                con.register("incoming_members", membership.drop("partition_date").to_arrow())
                con.execute(
                    "INSERT INTO review_batch_cases BY NAME SELECT batch_id, ? AS domain, case_id "
                    "FROM incoming_members",
                    [domain.name],
                )
                con.unregister("incoming_members")
            replace_partition_slice(con, "review_batches", batch_rows, domain.name, days)
        return Output(
            membership,
            metadata={
                "batches": len(batches),
                "cases_for_review": to_review.height,
                "review_folder": MetadataValue.path(str(review.batches_dir)),
                "batch_folders": MetadataValue.md(
                    "\n".join(f"- `{folder}`" for folder in links) or "_none_"
                ),
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
            "Verdicts returned by reviewers: files in the review inbox are validated against their "
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
        from hitl_gate.review.intake.escalation import export_escalations, pending_escalations
        from hitl_gate.review.intake.verdict_files import (
            ingest_verdict_file,
            peek_batch_id,
            pending_files,
        )
        from hitl_gate.review.settings import review_settings

        outcomes = []
        key = review.signing_key()
        with audit_db.connect() as con:
            for path in pending_files(review.inbox_dir):
                batch_id = peek_batch_id(path)
                if batch_id is not None and not batch_id.startswith(f"{domain.name}-"):
                    continue  # another domain's file: its own asset takes it
                outcome = ingest_verdict_file(
                    con,
                    path,
                    domain=domain,
                    batches_dir=review.batches_dir,
                    archive_dir=review.archive_dir,
                    key=key,
                    run_id=context.run.run_id,
                    settings=review_settings(domain),
                )
                outcomes.append(outcome)
                for message in outcome.messages:
                    context.log.warning(message)
            escalated = []
            # Only the routed rows of escalated cases are read (and the day's first row, whose
            # versions sign the batch), not the whole routed day.
            waiting = pending_escalations(con, domain.name)["case_id"].implode()
            for day in partition_days(context):
                first = _first_row_of_day(routed_decisions, day)
                if first is None:
                    continue
                of_day = routed_decisions.filter(pl.col("partition_date") == day)
                todays = of_day.filter(
                    pl.col(domain.case_id).cast(pl.String).is_in(waiting)
                ).collect()
                escalated += export_escalations(
                    con,
                    todays,
                    domain=domain,
                    settings=review_settings(domain),
                    batches_dir=review.batches_dir,
                    key=key,
                    partition_date=day,
                    created_at=datetime.now(UTC),
                    context=_manifest_context(first),
                    rule_texts=_rule_texts(con, domain),
                    run_id=context.run.run_id,
                )
            verdicts = query_frame(
                con,
                "SELECT v.case_id, v.batch_id, v.verdict, v.verdict_reason_code, v.reviewer_id, "
                "v.received_at, d.partition_date FROM effective_verdicts v JOIN decisions d "
                "ON d.domain = v.domain AND d.case_id = v.case_id "
                "WHERE v.domain = ? AND d.partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, partition_days(context)],
            )
        files = pl.DataFrame(
            {
                "file": [o.file_name for o in outcomes],
                "accepted": [o.accepted for o in outcomes],
                "rejected": [o.rejected for o in outcomes],
                "duplicate": [o.duplicate for o in outcomes],
                "error": [o.error for o in outcomes],
            }
        )
        return Output(
            verdicts,
            metadata={
                "verdicts_in_partition": verdicts.height,
                "files_processed": len(outcomes),
                "rows_rejected": int(sum(o.rejected for o in outcomes)),
                "escalation_batches": MetadataValue.md(
                    "\n".join(f"- `{b.batch_id}` ({len(b.case_ids)} cases)" for b in escalated)
                    or "_none_"
                ),
                "files": markdown_table(files),
            },
        )

    return [review_batches, reviewer_verdicts]

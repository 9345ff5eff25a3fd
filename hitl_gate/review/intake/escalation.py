"""Escalated cases go to the escalation queue as new signed batches; they leave the old batch.

An escalation (SLA breach found by the sweep, or a four-eyes disagreement found at intake)
names the queue that must now decide. Until a batch of that queue holds the case, nobody there
can work it, so the review loop re-exports every open escalation with a queue to go to: the
cases as the pipeline routed them (masked for the escalation role, which may see more than the
first reviewer did), in batches labelled `escalated`, due by the escalation queue's SLA. The
move is recorded per escalation (`escalation_batch_cases`), which closes the case in the batch
it left: intake refuses a late verdict from there, naming the batch the case went to. A
verdict from the escalation batch that makes the case final resolves its SLA escalations.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame, transaction
from hitl_gate.review.assignments import assigner_for_days, insert_first_assignments
from hitl_gate.review.export.batches import (
    FOUR_EYES_COLUMN,
    BatchExport,
    ReviewBatch,
    stage_review_batches,
)
from hitl_gate.review.intake.finality import CONFLICT, SLA_BREACH

ESCALATED_LABEL = "escalated"


def pending_escalations(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Open escalations with a queue to go to, not yet exported, on cases not yet final.

    Conflicts are the exception: their case is final by definition, and the escalation batch is
    where the escalation role resolves them (`finality.decide`).
    """
    return query_frame(
        con,
        "SELECT e.escalation_id, e.kind, e.case_id, e.batch_id AS from_batch_id, "
        "e.queue AS from_queue, e.escalate_to, e.raised_at, d.partition_date "
        "FROM review_escalations e JOIN decisions d ON d.domain = e.domain "
        "AND d.case_id = e.case_id WHERE e.domain = ? AND e.resolved_at IS NULL "
        "AND e.escalate_to IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
        "escalation_batch_cases x WHERE x.escalation_id = e.escalation_id) AND (e.kind = ? "
        "OR NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.domain = e.domain "
        "AND v.case_id = e.case_id)) "
        "ORDER BY e.raised_at, e.escalation_id",
        [domain, CONFLICT],
    )


def pending_days(con: duckdb.DuckDBPyConnection, domain: str) -> dict[date, list[str]]:
    """Decision days with escalations waiting for export, and their escalation ids."""
    pending = pending_escalations(con, domain)
    days: dict[date, list[str]] = {}
    for day, escalation in pending.select("partition_date", "escalation_id").iter_rows():
        days.setdefault(day, []).append(escalation)
    return days


def export_escalations(
    con: duckdb.DuckDBPyConnection, routed: pl.DataFrame, export: BatchExport, *, run_id: str
) -> list[ReviewBatch]:
    """Export the day's pending escalations as `escalated` batches and record the moves.

    `routed` holds the day's routed decisions (the cases as first exported, unmasked); `export`
    the day's export (its label is set to `escalated` here). A case with two open escalations
    goes once, to the queue of the earliest; both are recorded.
    """
    domain, partition_date, created_at = export.domain, export.partition_date, export.created_at
    pending = pending_escalations(con, domain.name).filter(
        pl.col("partition_date") == partition_date
    )
    case_id = domain.case_id
    cases = routed.with_columns(pl.col(case_id).cast(pl.String).alias("_case"))
    pending = pending.filter(pl.col("case_id").is_in(cases["_case"].implode()))
    if pending.is_empty():
        return []
    target = pending.unique("case_id", keep="first", maintain_order=True)
    chosen = (
        cases.join(target.select("case_id", "escalate_to"), left_on="_case", right_on="case_id")
        .with_columns(
            pl.col("escalate_to").alias("review_queue"),
            pl.lit(False).alias(FOUR_EYES_COLUMN),  # the escalation role decides alone
        )
        .drop("_case", "escalate_to")
    )
    settings = export.settings
    assigner = assigner_for_days(
        con,
        domain.name,
        created_at,
        [partition_date],
        needs_age_key=settings is not None and settings.encryption.enabled,
    )
    staged = stage_review_batches(chosen, replace(export, label=ESCALATED_LABEL, assigner=assigner))
    batches = staged.batches
    batch_of = {case: b.batch_id for b in batches for case in b.case_ids}
    moves = pending.select(
        "escalation_id",
        pl.col("case_id").replace_strict(batch_of, default=None).alias("batch_id"),
        pl.lit(domain.name).alias("domain"),
        "case_id",
        "from_batch_id",
        "from_queue",
        pl.lit(created_at).alias("exported_at"),
    ).filter(pl.col("batch_id").is_not_null())  # nobody to assign yet: still pending, next run
    rows = pl.DataFrame(
        {
            "batch_id": [b.batch_id for b in batches],
            "domain": domain.name,
            "partition_date": partition_date,
            "queue": [b.queue for b in batches],
            "folder": [str(b.folder) for b in batches],
            "case_count": [len(b.case_ids) for b in batches],
            "created_at": [b.created_at for b in batches],
            "due_at": [b.due_at for b in batches],
            "manifest_sha256": [b.manifest_sha256 for b in batches],
            "run_id": run_id,
        },
        schema_overrides={"case_count": pl.Int32},
    )
    try:
        with transaction(con):
            insert_new_rows(con, "escalation_batches", rows)
            insert_new_rows(con, "escalation_batch_cases", moves)
            insert_first_assignments(con, staged.assignment_rows(), domain.name, created_at)
    except BaseException:
        staged.discard()
        raise
    return staged.publish()


def moved_cases(con: duckdb.DuckDBPyConnection, domain: str) -> dict[str, dict[str, str]]:
    """batch -> case -> why the case is closed there (it was escalated to another batch)."""
    moved: dict[str, dict[str, str]] = {}
    for from_batch, case, kind, queue, batch in con.execute(
        "SELECT x.from_batch_id, x.case_id, e.kind, b.queue, x.batch_id "
        "FROM escalation_batch_cases x JOIN escalation_batches b ON b.batch_id = x.batch_id "
        "JOIN review_escalations e ON e.escalation_id = x.escalation_id WHERE x.domain = ? "
        "ORDER BY x.exported_at, x.escalation_id",
        [domain],
    ).fetchall():
        moved.setdefault(from_batch, {}).setdefault(
            case,
            f"case was escalated ({kind}) to queue '{queue}' in batch '{batch}'; verdicts on "
            "it from this batch are no longer accepted",
        )
    return moved


def resolve_breaches(
    con: duckdb.DuckDBPyConnection, domain: str, finals: pl.DataFrame, now: datetime
) -> None:
    """Close the open SLA escalations of cases that just became final."""
    open_breaches = con.execute(
        "SELECT count(*) FROM review_escalations WHERE domain = ? AND kind = ? "
        "AND resolved_at IS NULL",
        [domain, SLA_BREACH],
    ).fetchall()[0][0]
    if not open_breaches or finals.is_empty():
        return
    con.register("newly_final", finals.select("case_id").to_arrow())
    con.execute(
        "UPDATE review_escalations SET resolved_at = ? WHERE domain = ? AND kind = ? "
        "AND resolved_at IS NULL AND case_id IN (SELECT case_id FROM newly_final)",
        [now, domain, SLA_BREACH],
    )
    con.unregister("newly_final")

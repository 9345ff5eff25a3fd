"""The `reviewer_verdicts` stage: returned files taken in, escalations re-exported, verdicts read.

Every verdict file of the domain waiting in the inbox goes through the one intake path
(`verdict_files.ingest_verdict_file`); then the cases escalated past their SLA on the run's days
are exported again to their escalation queue; the stage's output is the effective verdicts of
those days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.store import load_registry
from hitl_gate.review.case_file import PolicyNotes
from hitl_gate.review.export.batches import BatchExport, ReviewBatch
from hitl_gate.review.export.days import manifest_context, notes_in_force
from hitl_gate.review.intake.escalation import export_escalations, pending_escalations
from hitl_gate.review.intake.inbox import inbox_files
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.received import shown_name
from hitl_gate.review.intake.recovery import Recovery, recover_interrupted
from hitl_gate.review.intake.sealing import IntakeSealer, merged, seal_written
from hitl_gate.review.intake.verdict_files import IntakeOutcome, ingest_verdict_file
from hitl_gate.review.settings import review_settings


@dataclass(frozen=True)
class ReviewFolders:
    """The reviewers' folder: batches sent, verdict files returned, files taken in."""

    batches: Path
    inbox: Path
    archive: Path
    limits: IntakeLimits = IntakeLimits()


@dataclass(frozen=True)
class VerdictIntake:
    """What one run of the stage took in and sent out, and the days' effective verdicts."""

    outcomes: tuple[IntakeOutcome, ...]
    escalated: tuple[ReviewBatch, ...]
    verdicts: pl.DataFrame
    # Verdict or opinion rows found that no intake wrote (forged, or a killed intake's): left
    # unsealed, named here (table, key, digest) for the run's log.
    seal_refusal: str | None = None
    # Interrupted intakes (killed between commit and seal) recovered or refused before.
    recovery: Recovery = Recovery()

    def files(self) -> pl.DataFrame:
        """One row per file taken in: accepted, rejected, duplicate, error."""
        return pl.DataFrame(
            {
                "file": [o.file_name for o in self.outcomes],
                "accepted": [o.accepted for o in self.outcomes],
                "rejected": [o.rejected for o in self.outcomes],
                "duplicate": [o.duplicate for o in self.outcomes],
                "error": [o.error for o in self.outcomes],
            }
        )


def first_row_of_day(routed: pl.LazyFrame, day: date) -> pl.DataFrame | None:
    """The first stored routed row of `day` (None if it has none), read by its position.

    `filter(day).head(1)` on the scan decoded every column of the whole file (2.2 GB at 3M
    cases); finding the position reads one column, and the one-row slice one row group.
    """
    position = routed.select((pl.col("partition_date") == day).arg_true().first()).collect()
    index = position.item()
    return None if index is None else routed.slice(index, 1).collect()


def take_in_verdicts(
    con: duckdb.DuckDBPyConnection,
    routed: pl.LazyFrame,
    days: Sequence[date],
    *,
    domain: DomainConfig,
    folders: ReviewFolders,
    key: bytes,
    run_id: str,
    now: datetime,
    seal: IntakeSealer | None = None,
) -> VerdictIntake:
    """Take in the domain's returned files, re-export the days' escalations, read the verdicts.

    Other domains' files stay in the inbox for their own stage. Only the routed rows of
    escalated cases are read (and each day's first row, whose versions sign the batch).
    `seal` seals the verdicts and opinions taken in, on `con`, before anything else happens
    (`sealing`): without it they stay unsealed and every other seal refuses them. With it, an
    earlier intake killed before its seal is first recovered (`recovery`).
    """
    recovery = Recovery()
    if seal is not None:
        recovery = recover_interrupted(
            con, domain, seal, batches_dir=folders.batches, archive_dir=folders.archive,
            key=key, limits=folders.limits, run_id=run_id, now=now,
        )  # fmt: skip
    settings = review_settings(domain)
    waiting = [
        returned
        for returned in inbox_files(folders.inbox, domain)
        if not returned.of_other_domain and returned.ready(now)
    ]
    registry = load_registry(con) if waiting else None
    outcomes = [
        ingest_verdict_file(
            con,
            returned.path,
            domain=domain,
            batches_dir=folders.batches,
            archive_dir=folders.archive,
            key=key,
            run_id=run_id,
            settings=settings,
            now=now,
            registry=registry,
            limits=folders.limits,
            name=shown_name(folders.inbox, returned.path),
        )
        for returned in waiting
    ]
    refusal = seal_written(con, seal, merged(*(outcome.written for outcome in outcomes)))
    escalated: list[ReviewBatch] = []
    open_escalations = pending_escalations(con, domain.name)["case_id"].implode()
    notes: PolicyNotes | None = None  # read once, and only if a day has cases
    # One read of the escalated rows of every day: a day without any exports nothing (a scan
    # per day of the whole range cost 27 s of the demo's 90 days).
    escalated_rows = routed.filter(
        pl.col(domain.case_id).cast(pl.String).is_in(open_escalations)
    ).collect()
    for day in days:
        todays = escalated_rows.filter(pl.col("partition_date") == day)
        first = None if todays.is_empty() else first_row_of_day(routed, day)
        if first is None:
            continue
        if notes is None:
            notes = notes_in_force(con, domain)
        export = BatchExport(
            domain=domain,
            batches_dir=folders.batches,
            key=key,
            partition_date=day,
            created_at=now,
            context=manifest_context(first),
            notes=notes,
            settings=settings,
        )
        escalated += export_escalations(con, todays, export, run_id=run_id)
    verdicts = query_frame(
        con,
        "SELECT v.case_id, v.batch_id, v.verdict, v.verdict_reason_code, v.reviewer_id, "
        "v.received_at, d.partition_date FROM effective_verdicts v JOIN decisions d "
        "ON d.domain = v.domain AND d.case_id = v.case_id "
        "WHERE v.domain = ? AND d.partition_date IN (SELECT unnest(?::DATE[]))",
        [domain.name, list(days)],
    )
    return VerdictIntake(tuple(outcomes), tuple(escalated), verdicts, refusal, recovery)

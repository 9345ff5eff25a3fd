"""The `review_batches` stage: a run's days of routed cases exported as signed batches, recorded.

Which cases go out (routed to review, not deferred by capacity, not executed by policy already),
which day each batch is named after, who each batch is assigned to, and what the audit database
records about the batches: the asset only hands in the stored routed cases and the review folder.

Files and database agree after any crash: batches are staged in hidden folders, the batch rows,
their cases and their assignments are committed in one transaction, and only then are the
folders renamed into place (issue 19). Cases nobody can be assigned stay queued, counted with
their reason (`ExportedDays.unassigned`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame, transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import (
    SECOND_OPINION,
    Assigner,
    Unassigned,
    earlier_loads,
    insert_first_assignments,
)
from hitl_gate.review.case_file import PolicyNotes, policy_notes
from hitl_gate.review.export.batches import (
    BatchExport,
    ReviewBatch,
    StagedExport,
    stage_review_batches,
    sweep_stale_staging,
)
from hitl_gate.review.gold import GoldSeeder
from hitl_gate.review.settings import review_settings

OpenDatabase = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
STALE_STAGING = timedelta(hours=6)  # far longer than any export takes
CONTEXT_FIELDS = (
    "policy_version",
    "policy_digest",
    "model_name",
    "model_version",
    "feature_service",
)
MEMBERSHIP_SCHEMA = {"batch_id": pl.String, "partition_date": pl.Date, "case_id": pl.String}


@dataclass(frozen=True)
class ExportedDays:
    """The batches a run exported, each with the run day it was exported for."""

    batches: tuple[tuple[date, ReviewBatch], ...]
    cases_for_review: int
    unassigned: tuple[Unassigned, ...] = ()

    @property
    def cases_unassigned(self) -> int:
        """Cases left queued because nobody could be assigned (each counted once, even when
        both four-eyes slots wait)."""
        return sum(u.cases for u in self.unassigned)

    def unassigned_reasons(self) -> dict[str, int]:
        """Cases left queued per reason."""
        counts: dict[str, int] = {}
        for item in self.unassigned:
            why = f"{item.partition_date} {item.queue}: {item.reason}"
            counts[why] = counts.get(why, 0) + item.cases
        return counts

    def membership(self) -> pl.DataFrame:
        """One row per exported case and batch: its batch and the run day (the stage's output;
        a four-eyes case appears once per opinion batch)."""
        return pl.DataFrame(
            {
                "batch_id": [b.batch_id for _, b in self.batches for _ in b.case_ids],
                "partition_date": [d for d, b in self.batches for _ in b.case_ids],
                "case_id": [c for _, b in self.batches for c in b.case_ids],
            },
            schema=MEMBERSHIP_SCHEMA,
        )

    def batch_rows(self, domain: str, run_id: str) -> pl.DataFrame:
        """The `review_batches` table rows of these batches."""
        batches = self.batches
        return pl.DataFrame(
            {
                "batch_id": [b.batch_id for _, b in batches],
                "domain": domain,
                "partition_date": [d for d, _ in batches],
                "queue": [b.queue for _, b in batches],
                "folder": [str(b.folder) for _, b in batches],
                "case_count": [len(b.case_ids) for _, b in batches],
                "created_at": [b.created_at for _, b in batches],
                "due_at": [b.due_at for _, b in batches],
                "manifest_sha256": [b.manifest_sha256 for _, b in batches],
                "run_id": run_id,
            },
            schema_overrides={"partition_date": pl.Date, "case_count": pl.Int32},
        )


def manifest_context(cases: pl.DataFrame) -> dict[str, str]:
    """The policy and model versions a batch's cases were routed with (signed into it)."""
    first = cases.row(0, named=True)
    return {name: first[name] for name in CONTEXT_FIELDS}


def rule_texts_in_force(con: duckdb.DuckDBPyConnection, domain: DomainConfig) -> dict[str, str]:
    """The wording of each rule of the policy in force (shown to reviewers)."""
    return {rule.id: rule.text for rule in notes_in_force(con, domain).rules.values()}


def notes_in_force(con: duckdb.DuckDBPyConnection, domain: DomainConfig) -> PolicyNotes:
    """The policy in force as reviewers read it: rule texts, the columns each reads, codes."""
    from policies.control import policy_in_force

    return policy_notes(policy_in_force(con, domain).policy)


def cases_to_review(
    routed: pl.LazyFrame, executed: pl.Series, domain: DomainConfig
) -> pl.DataFrame:
    """The routed cases to send: routed to human review, not deferred, not executed already.

    Cases beyond a queue's daily capacity wait (deferred): never auto-approved, not sent. Cases
    executed automatically before a day was re-routed to review (`executed`) are final, not sent
    (docs/policies.md); reviewed cases are re-exported as before, so re-runs match. Only these
    rows are read (about a tenth of the day at 1M cases).
    """
    # pl.lit, not Python's False: `~False` is -1, which Polars cannot `&` with a boolean.
    has_deferred = "review_deferred" in routed.collect_schema().names()
    deferred = pl.col("review_deferred") if has_deferred else pl.lit(False)
    done = pl.col(domain.case_id).cast(pl.String).is_in(executed.implode())
    return routed.filter((pl.col("route") == "human_review") & ~deferred & ~done).collect()


def review_groups(
    to_review: pl.DataFrame, days: Sequence[date]
) -> list[tuple[date, date, pl.DataFrame]]:
    """Per export day, its cases grouped by the day their batch is named after.

    That is the case's own day, except for a deferred case carried into this day's review pool
    (`carried_from`, see policies/capacity.py): its batch names the day it came from, so its
    verdict is executed and accounted for there, like every case of that day.
    """
    origin = pl.col("partition_date")
    if "carried_from" in to_review.columns:
        origin = pl.coalesce("carried_from", "partition_date")
    # One grouping of the whole frame, not a filter per day (a 90-day run paid 90 of them):
    # groups come in order of first appearance, rows in frame order, as per day before.
    tagged = to_review.with_columns(origin.alias("__origin"))
    by_day: dict[object, list[tuple[date, pl.DataFrame]]] = {}
    for (day, batch_day), part in tagged.group_by(
        "partition_date", "__origin", maintain_order=True
    ):
        by_day.setdefault(day, []).append((batch_day, part.drop("__origin")))
    return [(day, batch_day, part) for day in days for batch_day, part in by_day.get(day, [])]


def export_review_days(
    open_database: OpenDatabase,
    routed: pl.LazyFrame,
    days: Sequence[date],
    *,
    domain: DomainConfig,
    batches_dir: Path,
    key: bytes,
    created_at: datetime,
    run_id: str,
    pipeline_recipient: str | None = None,
    gold_rows: pl.LazyFrame | None = None,
) -> ExportedDays:
    """Export the review cases of `days` as assigned, signed batches and record them.

    The database is opened twice, briefly: to read what is executed, which rules are in force
    and the people registry, then to replace the days' batch records and add the assignments
    in one transaction; not while the batch files are written, so other processes are not kept
    waiting for the lock. The staged folders become visible only after that commit.
    """
    settings = review_settings(domain)
    with open_database() as con:
        registry = load_registry(con)
        # Gold cases (review/gold.py) from `gold_rows`, past routed rows; None or rate 0: off.
        gold = GoldSeeder.load(con, domain, settings, key, created_at, gold_rows)
        loads = earlier_loads(con, domain.name, max(days), days) if days else {}
        notes = notes_in_force(con, domain)
        executed = query_frame(
            con,
            "SELECT case_id FROM executions WHERE domain = ? AND decided_by = 'policy' "
            "AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain.name, list(days)],
        )["case_id"]
    to_review = cases_to_review(routed, executed, domain)
    sweep_stale_staging(batches_dir, STALE_STAGING, datetime.now(UTC))
    # Loads: the earlier days' assignments (the tie-break); this export replaces every batch
    # of `days`, so their own loads start at zero (a case counts against its decision day).
    assigner = Assigner(
        registry,
        domain.name,
        created_at,
        loads,
        needs_age_key=settings is not None and settings.encryption.enabled,
    )
    staged: list[tuple[date, StagedExport]] = []
    for day, batch_day, todays in review_groups(to_review, days):
        export = BatchExport(
            domain=domain,
            batches_dir=batches_dir,
            key=key,
            partition_date=batch_day,
            created_at=created_at,
            context=manifest_context(todays),
            notes=notes,
            settings=settings,
            assigner=assigner,
            pipeline_recipient=pipeline_recipient,
        )
        if gold is not None:
            todays = gold.seed(todays, batch_day)
        try:
            staged.append((day, stage_review_batches(todays, export)))
        except BaseException:
            for _, earlier in staged:
                earlier.discard()
            raise
    exported = ExportedDays(
        tuple((day, batch) for day, part in staged for batch in part.batches),
        to_review.height,
        tuple(u for _, part in staged for u in part.unassigned),
    )
    try:
        with open_database() as con:
            if gold is not None:  # first: a gold id recorded but never shown is harmless
                gold.record(con)
            record_review_batches(con, domain.name, days, exported, run_id, created_at)
    except BaseException:
        for _, part in staged:
            part.discard()
        raise
    for _, part in staged:
        part.publish()
    return exported


def record_review_batches(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    exported: ExportedDays,
    run_id: str,
    assigned_at: datetime,
) -> None:
    """Replace the batches (and their cases) recorded for `days` with `exported`, and record
    the pipeline's assignment (seq 1) of each batch not assigned before: one transaction."""
    batches = [b for _, b in exported.batches]
    first = pl.DataFrame(
        {
            "batch_id": [b.batch_id for b in batches if b.opinion_slot != SECOND_OPINION
                         for _ in b.case_ids],
            "case_id": [c for b in batches if b.opinion_slot != SECOND_OPINION
                        for c in b.case_ids],
        },
        schema={"batch_id": pl.String, "case_id": pl.String},
    )  # fmt: skip
    second = pl.DataFrame(
        {
            "batch_id": [b.batch_id for b in batches if b.opinion_slot == SECOND_OPINION
                         for _ in b.case_ids],
            "case_id": [c for b in batches if b.opinion_slot == SECOND_OPINION
                        for c in b.case_ids],
            "first_batch_id": [b.first_batch_id for b in batches
                               if b.opinion_slot == SECOND_OPINION for _ in b.case_ids],
        },
        schema={"batch_id": pl.String, "case_id": pl.String, "first_batch_id": pl.String},
    )  # fmt: skip
    assigned = [b for b in batches if b.assignee_id is not None]
    with transaction(con):
        for table in ("review_batch_cases", "review_second_opinion_cases"):
            con.execute(
                f"DELETE FROM {table} WHERE domain = ? AND batch_id IN "
                "(SELECT batch_id FROM review_batches WHERE domain = ? "
                "AND partition_date IN (SELECT unnest(?::DATE[])))",
                [domain, domain, list(days)],
            )
        con.execute(
            "DELETE FROM review_batches WHERE domain = ? "
            "AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain, list(days)],
        )
        for table, frame in (
            ("review_batch_cases", first),
            ("review_second_opinion_cases", second),
            ("review_batches", exported.batch_rows(domain, run_id)),
        ):
            if frame.height:
                con.register(
                    "incoming_rows", frame.with_columns(pl.lit(domain).alias("domain")).to_arrow()
                )
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
                con.unregister("incoming_rows")
        insert_first_assignments(
            con,
            [(b.batch_id, b.queue, str(b.assignee_id), b.opinion_slot) for b in assigned],
            domain,
            assigned_at,
        )

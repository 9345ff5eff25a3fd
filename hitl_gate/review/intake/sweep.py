"""The periodic review sweep: nothing received goes unrecorded, nothing late goes unnoticed.

The inbox sensor reacts to new files; the sweep is the safety net that does not trust events.
It finds files in the inbox or the archive whose hash is not in `verdict_files` (a run that
failed, a file copied in by hand), puts archived strays back into the inbox so the one intake
path records them, applies each queue's expiry default (`review/expiry.py`: escalate, or hold
for a named role; never approve) to every case still without a final verdict once its batch is
past due, closes batches past due plus grace, and appends an alert line per new escalation.
Everything it writes is keyed so running it twice changes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame
from hitl_gate.identity.signatures import signature_path
from hitl_gate.review.expiry import expiry_actions, expiry_default
from hitl_gate.review.gold_cases import GOLD_CASE
from hitl_gate.review.intake.escalation import pending_days
from hitl_gate.review.intake.finality import SLA_BREACH
from hitl_gate.review.intake.received import VERDICT_SUFFIXES, pending_files
from hitl_gate.review.intake.signed import identity_refused
from hitl_gate.review.intake.verdict_files import file_sha256
from hitl_gate.review.settings import ReviewSettings


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found and did."""

    unrecorded: tuple[Path, ...]  # inbox files (including restored strays) awaiting intake
    restored: int
    escalations: int
    closed: int
    # Decision days whose escalations wait for their escalation batch, with the escalation ids.
    to_export: dict[date, list[str]] = field(default_factory=dict)


def _recorded(con: duckdb.DuckDBPyConnection, hashes: list[str]) -> set[str]:
    rows = con.execute(
        "SELECT file_sha256 FROM verdict_files WHERE file_sha256 IN (SELECT unnest(?::VARCHAR[]))",
        [hashes],
    ).fetchall()
    return {row[0] for row in rows} | identity_refused(con, hashes)


def _attested(con: duckdb.DuckDBPyConnection, hashes: list[str]) -> set[str]:
    """Which of `hashes` the portal attested: it archives them before taking them in, and a
    portal submission is the portal's to take in (or recover), never the inbox's."""
    rows = con.execute(
        "SELECT file_sha256 FROM portal_verdicts "
        "WHERE file_sha256 IN (SELECT unnest(?::VARCHAR[]))",
        [hashes],
    ).fetchall()
    return {row[0] for row in rows}


def _archived_file(path: Path) -> bool:
    """An archived returned file (`<sha256>.xlsx|csv`), not its error report or signature."""
    return (
        path.is_file()
        and path.suffix.lower() in VERDICT_SUFFIXES
        and re.fullmatch(r"[0-9a-f]{64}", path.stem) is not None
    )


def _unrecorded_files(
    con: duckdb.DuckDBPyConnection, inbox: Path, archive: Path
) -> tuple[list[Path], int]:
    """Inbox files not yet recorded; archived files not recorded are copied back first."""
    restored = 0
    if archive.exists():
        strays = [p for p in archive.iterdir() if _archived_file(p)]
        known = _recorded(con, [p.stem for p in strays]) | _attested(con, [p.stem for p in strays])
        for path in strays:
            if path.stem not in known:
                inbox.mkdir(parents=True, exist_ok=True)
                target = inbox / f"restored-{path.name}"
                if not target.exists():
                    if signature_path(path).is_file():
                        shutil.copy2(signature_path(path), signature_path(target))
                    shutil.copy2(path, target)
                    restored += 1
    waiting = pending_files(inbox)
    known = _recorded(con, [file_sha256(p) for p in waiting])
    return [p for p in waiting if file_sha256(p) not in known], restored


def _overdue_cases(con: duckdb.DuckDBPyConnection, domain: str, now: datetime) -> pl.DataFrame:
    """Cases a batch still holds past its due time with no final verdict (escalation batches
    included: a late escalation escalates again, to the next queue). Gold cases never expire:
    they are never final and there is nothing to decide."""
    return query_frame(
        con,
        "SELECT m.batch_id, m.queue, m.due_at, m.case_id, m.escalation "
        "FROM review_batch_members m WHERE m.domain = ? AND m.due_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM verdicts v WHERE v.domain = m.domain AND v.case_id = m.case_id) "
        f"AND NOT {GOLD_CASE.format(alias='m')}",
        [domain, now],
    )


def sweep_review(
    con: duckdb.DuckDBPyConnection,
    *,
    domain: str,
    settings: ReviewSettings | None,
    review_dir: Path,
    now: datetime,
) -> SweepReport:
    """Run one sweep for `domain` (see the module docstring); idempotent."""
    unrecorded, restored = _unrecorded_files(con, review_dir / "inbox", review_dir / "archive")
    overdue = _overdue_cases(con, domain, now)
    grace = settings.grace_hours if settings else 0

    # Each queue's expiry default (review/expiry.py): escalate, or hold for a named role.
    acted = expiry_actions(overdue, settings, domain, now)
    defaults = {q: expiry_default(settings, q) for q in overdue["queue"].unique().to_list()}

    def escalate_to(queue: str) -> str | None:
        return defaults[queue].escalate_to

    # A breach in an escalation batch is a new escalation of the same case, one level up.
    level = pl.when(pl.col("escalation")).then(pl.format("@{}", "queue")).otherwise(pl.lit(""))
    escalations = overdue.select(
        pl.format("{}:{}:{}{}", pl.lit(SLA_BREACH), pl.lit(domain), "case_id", level).alias(
            "escalation_id"
        ),
        pl.lit(domain).alias("domain"),
        pl.lit(SLA_BREACH).alias("kind"),
        "case_id",
        "batch_id",
        "queue",
        pl.col("queue").map_elements(escalate_to, return_dtype=pl.String).alias("escalate_to"),
        pl.struct("queue", pl.col("due_at").cast(pl.String))
        .map_elements(lambda r: defaults[r["queue"]].detail(r["due_at"]), return_dtype=pl.String)
        .alias("detail"),
        pl.lit(now).alias("raised_at"),
    )
    new_ids = set(escalations["escalation_id"].to_list())
    if new_ids:
        existing = con.execute(
            "SELECT escalation_id FROM review_escalations "
            "WHERE escalation_id IN (SELECT unnest(?::VARCHAR[]))",
            [sorted(new_ids)],
        ).fetchall()
        new_ids -= {row[0] for row in existing}
    raised = insert_new_rows(con, "review_escalations", escalations)
    insert_new_rows(con, "review_expiry_actions", acted)
    expired = query_frame(
        con,
        "SELECT batch_id FROM review_all_batches WHERE domain = ? "
        "AND due_at + to_hours(CAST(? AS BIGINT)) < ? AND batch_id NOT IN "
        "(SELECT batch_id FROM review_batch_closures)",
        [domain, grace, now],
    )
    closed = insert_new_rows(
        con,
        "review_batch_closures",
        expired.with_columns(
            pl.lit(domain).alias("domain"),
            pl.lit("expired: past due plus grace").alias("reason"),
            pl.lit(now).alias("closed_at"),
        ),
    )
    _alert(review_dir, settings, escalations.filter(pl.col("escalation_id").is_in(new_ids)))
    con.execute(
        "INSERT INTO review_sweeps VALUES (?, ?, ?, ?, ?)",
        [domain, now, len(unrecorded), raised, closed],
    )
    return SweepReport(tuple(unrecorded), restored, raised, closed, pending_days(con, domain))


def _alert(review_dir: Path, settings: ReviewSettings | None, raised: pl.DataFrame) -> None:
    """One JSON line per new escalation, for whatever pages people (mail, chat, ticketing)."""
    if raised.is_empty():
        return
    path = review_dir / (settings.alert_log if settings else "alerts.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for row in raised.iter_rows(named=True):
            row["raised_at"] = row["raised_at"].isoformat()
            handle.write(json.dumps(row, sort_keys=True) + "\n")


def review_status(con: duckdb.DuckDBPyConnection, domain: str, now: datetime) -> pl.DataFrame:
    """Per queue: open batches (escalation batches among them), open cases, of which due and
    overdue, cases escalated out of the queue's batches, and open escalations."""
    return query_frame(
        con,
        "WITH members AS (SELECT m.*, v.case_id IS NOT NULL AS final FROM review_batch_members m "
        "LEFT JOIN verdicts v ON v.domain = m.domain AND v.case_id = m.case_id "
        f"WHERE m.domain = ? AND NOT {GOLD_CASE.format(alias='m')}), "
        "open_batches AS (SELECT b.* FROM review_all_batches b "
        "WHERE b.domain = ? AND b.batch_id NOT IN (SELECT batch_id FROM review_batch_closures)) "
        "SELECT q.queue, "
        "(SELECT count(*) FROM open_batches o WHERE o.queue = q.queue) AS open_batches, "
        "(SELECT count(*) FROM open_batches o WHERE o.queue = q.queue AND o.escalation) "
        "AS escalation_batches, "
        "count(m.case_id) FILTER (WHERE NOT m.final) AS open_cases, "
        "count(m.case_id) FILTER (WHERE NOT m.final AND m.due_at >= ?) AS due, "
        "count(m.case_id) FILTER (WHERE NOT m.final AND m.due_at < ?) AS overdue, "
        "(SELECT count(*) FROM escalation_batch_cases x WHERE x.domain = ? "
        "AND x.from_queue = q.queue) AS escalated_out, "
        "(SELECT count(*) FROM review_escalations e WHERE e.domain = ? "
        "AND e.queue = q.queue AND e.resolved_at IS NULL) AS open_escalations "
        "FROM (SELECT DISTINCT queue FROM review_all_batches WHERE domain = ?) q "
        "LEFT JOIN members m ON m.queue = q.queue GROUP BY q.queue ORDER BY q.queue",
        [domain, domain, now, now, domain, domain, domain],
    )

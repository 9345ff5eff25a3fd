"""What a supervisor watches: open work per queue and person against its due time, escalations.

A case is open for a person while a batch they currently hold (the latest row of
`review_assignments`) still holds it, they have given no opinion on it, it has no final verdict
and the batch is not closed. It is `due_soon` when its due time falls within `soon` from now,
`overdue` once the due time has passed. Gold cases count like any other here (they are work a
reviewer cannot tell apart); they never become final, so they leave the count with the
reviewer's opinion.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame

DUE_SOON = timedelta(hours=8)

_OPEN_WORK = (
    "WITH current AS (SELECT batch_id, assignee_id, opinion_slot, row_number() OVER "
    "(PARTITION BY batch_id ORDER BY seq DESC) AS n FROM review_assignments WHERE domain = $d) "
    "SELECT m.queue, c.assignee_id, m.batch_id, m.case_id, m.due_at, c.opinion_slot "
    "FROM review_batch_members m JOIN current c ON c.batch_id = m.batch_id AND c.n = 1 "
    "WHERE m.domain = $d "
    "AND m.batch_id NOT IN (SELECT batch_id FROM review_batch_closures) "
    "AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.domain = m.domain "
    "AND v.case_id = m.case_id) "
    "AND NOT EXISTS (SELECT 1 FROM verdict_opinions o WHERE o.domain = m.domain "
    "AND o.case_id = m.case_id AND o.reviewer_id = c.assignee_id)"
)


def open_work(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """One row per open (case, holder): queue, assignee_id, batch_id, case_id, due_at, slot."""
    frame: pl.DataFrame = con.sql(_OPEN_WORK, params={"d": domain}).pl()
    return frame


def sla_dashboard(
    con: duckdb.DuckDBPyConnection, domain: str, now: datetime, soon: timedelta = DUE_SOON
) -> pl.DataFrame:
    """Per queue and assignee: open cases, of which due soon and overdue, and the next due time."""
    frame: pl.DataFrame = con.sql(
        f"SELECT queue, assignee_id, count(*) AS open, "
        "count(*) FILTER (WHERE due_at >= $now AND due_at < $soon) AS due_soon, "
        "count(*) FILTER (WHERE due_at < $now) AS overdue, min(due_at) AS next_due "
        f"FROM ({_OPEN_WORK}) GROUP BY ALL ORDER BY queue, assignee_id",
        params={"d": domain, "now": now, "soon": now + soon},
    ).pl()
    return frame


def open_batches(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Batches with open work: batch_id, queue, assignee_id, opinion_slot, open, due_at."""
    work = open_work(con, domain)
    return (
        work.group_by("batch_id", "queue", "assignee_id", "opinion_slot")
        .agg(pl.len().alias("open"), pl.col("due_at").min().alias("due_at"))
        .sort("due_at", "batch_id")
    )


def open_escalations(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Unresolved escalations, oldest first, with the batch they were exported to (if any)."""
    return query_frame(
        con,
        "SELECT e.escalation_id, e.kind, e.case_id, e.batch_id, e.queue, e.escalate_to, "
        "e.detail, e.raised_at, x.batch_id AS exported_to FROM review_escalations e "
        "LEFT JOIN escalation_batch_cases x ON x.escalation_id = e.escalation_id "
        "WHERE e.domain = ? AND e.resolved_at IS NULL ORDER BY e.raised_at, e.escalation_id",
        [domain],
    )

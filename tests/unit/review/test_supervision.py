"""The SLA dashboard counts a case open for the person who holds it until they answer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hitl_gate.core.database import audit_connection
from hitl_gate.review.supervision import open_escalations, sla_dashboard
from tests.unit.review.supervision_rows import DOMAIN, T0, batch, final, opinion


def test_open_due_soon_and_overdue_per_queue_and_person(tmp_path: Path) -> None:
    now = T0 + timedelta(hours=20)
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "late", "credit_analyst", ["c1", "c2"], "ana", due_hours=10)
        batch(con, "soon", "credit_analyst", ["c3", "c4", "c5"], "ana", due_hours=24)
        batch(con, "later", "credit_analyst", ["c6"], "bob", due_hours=72)
        opinion(con, "c3", "soon", "ana", "approve", hours=1)  # answered: not open
        final(con, "c4", "soon", "decline")  # final by other means: not open
        # A reassigned batch is open for its new holder only.
        con.execute(
            "INSERT INTO review_assignments VALUES ('later', 2, ?, 'credit_analyst', 'ana', 0, "
            "'cho', 'fp', 'sig', 'leave', ?)",
            [DOMAIN, T0],
        )
        board = sla_dashboard(con, DOMAIN, now)
    assert board.select("queue", "assignee_id", "open", "due_soon", "overdue").rows() == [
        ("credit_analyst", "ana", 4, 1, 2)
    ]


def test_closed_batches_and_four_eyes_slots(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "e1", "senior_underwriter", ["c1"], "sue", slot=1)
        batch(con, "e2", "senior_underwriter", ["c1"], "sam", slot=2, first_batch="e1")
        batch(con, "old", "credit_analyst", ["c9"], "ana")
        con.execute("INSERT INTO review_batch_closures VALUES ('old', ?, 'expired', ?)",
                    [DOMAIN, T0])  # fmt: skip
        opinion(con, "c1", "e1", "sue", "approve", hours=1, stage="first")
        board = sla_dashboard(con, DOMAIN, T0)
        con.execute(
            "INSERT INTO review_escalations VALUES ('sla_breach:x:c9', ?, 'sla_breach', 'c9', "
            "'old', 'credit_analyst', 'senior_underwriter', 'late', ?, NULL)",
            [DOMAIN, T0],
        )
        escalations = open_escalations(con, DOMAIN)
    assert board.select("assignee_id", "open").rows() == [("sam", 1)]
    assert escalations["case_id"].to_list() == ["c9"]

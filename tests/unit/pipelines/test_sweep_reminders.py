"""The review sweep sensor sends owed reminders through the home's notifier, once each."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from pipelines.resources import AuditDatabase, ReviewWorkspace
from pipelines.sensors import remind
from tests.unit.review.supervision_rows import T0, batch

DOMAIN = load_domain("consumer_credit")


def test_sweep_reminds_once_and_only_with_a_folder(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with audit_connection(db) as con:
        batch(con, "b1", "credit_analyst", ["c1"], "ana", due_hours=10)
    audit = AuditDatabase(database=str(db))
    folder = tmp_path / "notifications"
    review = ReviewWorkspace(review_dir=str(tmp_path / "review"), secrets_dir=str(tmp_path / "s"),
                             notifications_dir=str(folder))  # fmt: skip
    unset = ReviewWorkspace(review_dir=str(tmp_path / "review"), secrets_dir=str(tmp_path / "s"))
    now = T0 + timedelta(hours=4)
    assert remind(DOMAIN, unset, audit, now).sent == ()
    assert remind(DOMAIN, review, audit, now).sent == ("due_soon:b1:ana",)
    assert remind(DOMAIN, review, audit, now + timedelta(minutes=15)).sent == ()
    assert [p.name for p in (folder / "ana").iterdir()] == ["due_soon_b1_ana.txt"]

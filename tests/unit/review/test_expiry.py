"""Expiry defaults: escalate or hold for a named role, explicit per queue, applied by the sweep
and recorded with the settings in force; automatic approval is refused at load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.review.expiry import expiry_default
from hitl_gate.review.intake.sweep import sweep_review
from hitl_gate.review.settings import ReviewSettings, ReviewSettingsError, load_settings_file
from tests.unit.review.supervision_rows import DAY, DOMAIN, T0, batch

DOMAIN_CONFIG = load_domain(DOMAIN)
SOURCE = DOMAIN_CONFIG.source_dir / str(DOMAIN_CONFIG.review.settings)


def with_queue(tmp_path: Path, **fields: object) -> Path:
    """The domain's review.yaml with fields of the credit_analyst queue changed."""
    data = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    data["queues"]["credit_analyst"].update(fields)
    path = tmp_path / "review.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"on_expiry": "approve"}, "never approved"),
        ({"on_expiry": "auto_approve"}, "never approved"),
        ({"on_expiry": "decline"}, "never approved"),
        ({"on_expiry": ""}, "never approved"),
        ({"on_expiry": "hold"}, "needs hold_for_role"),
        ({"on_expiry": "hold", "hold_for_role": "nobody"}, "unknown role 'nobody'"),
        ({"on_expiry": "escalate", "hold_for_role": "compliance"}, "only for on_expiry 'hold'"),
    ],
)
def test_settings_refuse_anything_but_escalate_or_hold(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ReviewSettingsError, match=message):
        load_settings_file(with_queue(tmp_path, **fields))


def test_the_shipped_domains_state_their_expiry_defaults() -> None:
    for name in ("consumer_credit", "lending_club"):
        domain = load_domain(name)
        raw = yaml.safe_load(
            (domain.source_dir / str(domain.review.settings)).read_text(encoding="utf-8")
        )
        assert all("on_expiry" in queue for queue in raw["queues"].values()), name


def sweep(db: Path, settings: ReviewSettings, tmp_path: Path, hours: float) -> None:
    with audit_connection(db) as con:
        sweep_review(con, domain=DOMAIN, settings=settings, review_dir=tmp_path / "review",
                     now=T0 + timedelta(hours=hours))  # fmt: skip


def test_hold_keeps_the_case_for_the_role_and_records_what_the_configuration_said(
    tmp_path: Path,
) -> None:
    held = load_settings_file(with_queue(tmp_path, on_expiry="hold", hold_for_role="compliance"))
    db = tmp_path / "a.duckdb"
    with audit_connection(db) as con:
        batch(con, "b1", "credit_analyst", ["c1", "g1"], "ana", due_hours=10)
        batch(con, "b2", "senior_underwriter", ["c2"], "sue", due_hours=10)
        con.execute(
            "INSERT INTO review_gold_cases VALUES (?, 'g1', 'old', 'approve', 'outcome', "
            "'credit_analyst', ?, ?)",
            [DOMAIN, DAY, T0],
        )
    sweep(db, held, tmp_path, hours=5)  # not due yet: nothing
    sweep(db, held, tmp_path, hours=11)
    sweep(db, held, tmp_path, hours=12)  # idempotent
    with audit_connection(db, read_only=True) as con:
        escalations = query_frame(
            con, "SELECT case_id, escalate_to, detail FROM review_escalations ORDER BY case_id"
        )
        acted = query_frame(
            con, "SELECT case_id, action, hold_for_role, escalate_to, settings_digest "
            "FROM review_expiry_actions ORDER BY case_id",
        )  # fmt: skip
        nothing_decided = con.execute(
            "SELECT (SELECT count(*) FROM verdicts) + (SELECT count(*) FROM executions)"
        ).fetchall()[0][0]
    assert escalations["case_id"].to_list() == ["c1", "c2"]  # the gold case never expires
    c1, c2 = escalations.rows(named=True)
    assert c1["escalate_to"] is None and "held for role 'compliance'" in c1["detail"]
    assert c2["escalate_to"] == "compliance_review"
    assert acted.select("case_id", "action", "hold_for_role", "escalate_to").rows() == [
        ("c1", "hold", "compliance", None),
        ("c2", "escalate", None, "compliance_review"),
    ]
    assert acted["settings_digest"].to_list() == [
        expiry_default(held, "credit_analyst").settings_digest,
        expiry_default(held, "senior_underwriter").settings_digest,
    ]
    assert nothing_decided == 0  # expiry never decides a case

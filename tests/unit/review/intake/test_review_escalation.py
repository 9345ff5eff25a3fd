"""Escalated cases are re-exported to the escalation queue and closed in the batch they left.

Round trips through the real export, sweep and intake on a small workspace: export -> SLA
breach -> escalation batch -> senior verdict -> final; a four-eyes disagreement -> compliance
batch -> final; a late verdict from the old batch refused with the reason; a late escalation
batch escalating again, one level up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.review.intake.escalation import ESCALATED_LABEL
from hitl_gate.review.intake.sweep import review_status, sweep_review
from tests.review_fixtures import (
    CREATED,
    DAY,
    Workspace,
    export_escalated,
    make_workspace,
    record_export,
)

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST, SENIOR, COMPLIANCE = "credit_analyst", "senior_underwriter", "compliance_review"


_record_export = record_export


def _sweep(ws: Workspace, con: duckdb.DuckDBPyConnection, at: datetime):
    return sweep_review(
        con, domain="consumer_credit", settings=ws.settings, review_dir=ws.root, now=at
    )


_export = export_escalated


def _status(ws: Workspace, at: datetime) -> dict[str, dict]:
    with audit_connection(ws.db) as con:
        frame = review_status(con, "consumer_credit", at)
    return {row["queue"]: row for row in frame.iter_rows(named=True)}


def test_sla_breach_round_trip(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _record_export(ws)
    on_time = {"verdict": "approve", "reviewer_id": "analyst-7", "rationale": "ok"}
    assert ws.ingest(ws.fill_csv(ANALYST, "one.csv", {0: on_time})).accepted == 1
    breach = CREATED + timedelta(hours=49)
    with audit_connection(ws.db) as con:
        report = _sweep(ws, con, breach)
        assert report.escalations == 3 + 3  # three analyst cases open, three senior cases
        assert list(report.to_export) == [DAY] and len(report.to_export[DAY]) == 6
        batches = _export(ws, con, breach)
        assert _export(ws, con, breach) == []  # exported once
        assert _sweep(ws, con, breach).to_export == {}
        # Each escalation batch is assigned to a person of the escalation role, so its
        # assignee's signature is the one intake accepts.
        from hitl_gate.review.assignments import current_assignee

        holders = {b.queue: current_assignee(con, b.batch_id) for b in batches}
    assert {q: (a.assignee_id if a else None) for q, a in holders.items()} == {
        SENIOR: "uw-ana",
        COMPLIANCE: "comp-chen",
    }
    by_queue = {b.queue: b for b in batches}
    assert set(by_queue) == {SENIOR, COMPLIANCE}  # each queue escalates to its next one
    escalated = by_queue[SENIOR]
    assert f"-{SENIOR}_{ESCALATED_LABEL}-" in escalated.batch_id
    assert sorted(escalated.case_ids) == ["APP-000", "APP-002", "APP-003"]
    assert escalated.due_at == breach + timedelta(hours=24)  # the senior queue's SLA
    manifest = (escalated.folder / "manifest.json").read_text()
    assert '"role": "senior_underwriter"' in manifest  # masked for the escalation role
    shown = (escalated.folder / "cases.csv").read_text()
    assert "Quartermaster" not in shown and "Qu***********" in shown

    status = _status(ws, breach)
    assert status[ANALYST]["escalated_out"] == 3 and status[ANALYST]["open_cases"] == 0
    assert status[SENIOR]["escalation_batches"] == 1 and status[SENIOR]["open_cases"] == 3
    assert status[SENIOR]["escalated_out"] == 3 and status[COMPLIANCE]["open_cases"] == 3

    late = ws.ingest(ws.fill(ANALYST, "late.xlsx", "analyst-7"), now=breach)
    assert late.accepted == 0
    messages = " | ".join(late.messages)
    assert (
        f"case was escalated (sla_breach) to queue '{SENIOR}' in batch '{escalated.batch_id}'"
        in messages
    )
    assert "already has a final verdict" in messages  # APP-001, answered in time

    ws.batches["escalated"] = escalated
    final = ws.ingest(ws.fill("escalated", "senior.xlsx", "uw-ana"), now=breach)
    assert (final.accepted, final.rejected) == (3, 0)
    assert ws.count("SELECT count(*) FROM verdicts") == 4
    assert ws.count("SELECT count(*) FROM verdicts WHERE batch_id = ?", [escalated.batch_id]) == 3
    assert (
        ws.count(
            "SELECT count(*) FROM review_escalations WHERE kind = 'sla_breach' "
            "AND queue = ? AND resolved_at IS NOT NULL",
            [ANALYST],
        )
        == 3
    )
    after = _status(ws, breach)
    assert (after[SENIOR]["open_cases"], after[COMPLIANCE]["open_cases"]) == (0, 3)


def test_four_eyes_disagreement_goes_to_compliance(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _record_export(ws)
    ws.ingest(ws.fill(SENIOR, "a.xlsx", "uw-ana"))
    flip = {(3, "verdict"): "decline", (3, "rationale"): "income unverified"}
    assert ws.ingest(ws.fill(SENIOR, "b.xlsx", "uw-ben", flip)).escalated == 1
    with audit_connection(ws.db) as con:
        (batch,) = _export(ws, con, CREATED + timedelta(hours=2))
    assert (batch.queue, batch.case_ids) == (COMPLIANCE, ("APP-005",))
    ws.batches["escalated"] = batch
    stale = ws.ingest(ws.fill(SENIOR, "c.xlsx", "comp-chen"))  # the old batch: refused
    assert stale.accepted == 0 and "escalated (four_eyes_disagreement)" in " ".join(stale.messages)
    settled = ws.ingest(ws.fill("escalated", "d.xlsx", "comp-chen"))
    assert settled.accepted == 1
    assert ws.count("SELECT count(*) FROM review_escalations WHERE resolved_at IS NULL") == 0
    assert ws.count("SELECT count(*) FROM verdicts WHERE case_id = 'APP-005'") == 1


def test_late_escalation_batch_escalates_one_level_up(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _record_export(ws)
    breach = CREATED + timedelta(hours=49)
    with audit_connection(ws.db) as con:
        _sweep(ws, con, breach)
        first = {b.queue: b for b in _export(ws, con, breach)}[SENIOR]
        again = _sweep(ws, con, breach + timedelta(hours=25))
        # A new escalation per case of each late escalation batch; compliance has no next queue.
        assert again.escalations == len(first.case_ids) + 3
        assert list(again.to_export) == [DAY] and len(again.to_export[DAY]) == len(first.case_ids)
        second = {b.queue: b for b in _export(ws, con, breach + timedelta(hours=25))}
        ids = query_frame(
            con, "SELECT escalation_id FROM escalation_batch_cases WHERE from_batch_id = ?",
            [first.batch_id],
        )["escalation_id"].to_list()  # fmt: skip
    assert set(second[COMPLIANCE].case_ids) == set(first.case_ids)
    assert all(i.endswith(f"@{SENIOR}") for i in ids)


def test_override_signals_by_rule_reviewer_and_policy(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _record_export(ws)
    with audit_connection(ws.db) as con:
        con.execute(
            "UPDATE decisions SET policy_version = 'v1', route_rule_id = 'REV-BAND-D' "
            "WHERE case_id = 'APP-000'"
        )
    override = {(3, "verdict"): "approve", (3, "rationale"): "income verified by phone"}
    assert ws.ingest(ws.fill(ANALYST, "a.xlsx", "analyst-7", override)).accepted == 4
    with audit_connection(ws.db) as con:
        signals = query_frame(
            con,
            "SELECT policy_version, rule_id, reviewer_id, suggested_action, verdict, opinions "
            "FROM review_override_signals WHERE is_override",
        )
    assert signals.rows() == [("v1", "REV-BAND-D", "analyst-7", "decline", "approve", 1)]

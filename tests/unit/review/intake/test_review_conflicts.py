"""A second, differing verdict on a final case: conflict -> escalation batch -> resolution.

Round trips through the real export, intake and execution logic on a small workspace with a
real DuckDB: final verdict -> executed -> differing verdict (conflict) -> escalation batch of
the senior queue -> resolution by a senior underwriter, recorded with who, when and why; the
case is never executed twice (a differing resolution after execution is a reversal request),
and before execution the resolution decides. Anyone else's verdict on the conflicted case is
refused with the reason.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection, insert_new_rows, query_frame
from hitl_gate.execution.final_actions import final_actions
from hitl_gate.review.intake.conflicts import reversal_requests
from hitl_gate.review.intake.finality import CONFLICT, CaseState, decide, escalation_id
from tests.review_fixtures import (
    CASE_ID,
    DAY,
    IN_TIME,
    Workspace,
    export_escalated,
    make_workspace,
    record_export,
    review_cases,
)

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"
CASE = "APP-001"  # first row of the analyst batch (priority 1), risk band B: suggested approve
CONFLICT_ID = escalation_id(CONFLICT, "consumer_credit", CASE)
LATER = IN_TIME + timedelta(hours=2)


def _answer(ws: Workspace, queue: str, name: str, **values: str) -> Path:
    return ws.fill_csv(queue, name, {0: values})


def _execute(ws: Workspace) -> int:
    """What `final_decisions` does: execute the final actions not yet executed; new rows."""
    routed = review_cases().with_columns(
        pl.lit(DAY).alias("partition_date"),
        pl.lit("human_review").alias("route"),
        pl.lit("v1").alias("policy_version"),
        pl.lit("3").alias("model_version"),
        pl.lit(None, pl.List(pl.String)).alias("reason_codes"),
    )
    with audit_connection(ws.db) as con:
        verdicts = query_frame(con, "SELECT * FROM effective_verdicts")
        actions = final_actions(routed, verdicts, CASE_ID).filter(pl.col("status") == "executed")
        rows = actions.select(
            pl.lit("consumer_credit").alias("domain"),
            "case_id", "partition_date", "action", "decided_by", "reviewer_id", "route",
            "policy_version", "model_version", "reason_codes",
            pl.lit("run").alias("run_id"), pl.lit(LATER).alias("executed_at"),
        )  # fmt: skip
        return insert_new_rows(con, "executions", rows)


def _conflicted(ws: Workspace, *, executed: bool) -> None:
    """analyst-7 approves the case (final), optionally executed; analyst-12 then declines it."""
    record_export(ws)
    first = _answer(ws, ANALYST, "a.csv", verdict="approve", reviewer_id="analyst-7")
    assert ws.ingest(first).accepted == 1
    if executed:
        assert _execute(ws) == 1
    second = _answer(
        ws, ANALYST, "b.csv", verdict="decline", reviewer_id="analyst-12", rationale="DTI too high"
    )
    outcome = ws.ingest(second)
    assert (outcome.accepted, outcome.escalated) == (0, 1)
    assert "recorded as a conflict" in " ".join(outcome.messages)


def _escalation_batch(ws: Workspace) -> None:
    with audit_connection(ws.db) as con:
        (batch,) = export_escalated(ws, con, LATER)
        assert export_escalated(ws, con, LATER) == []  # exported once
    assert (batch.queue, batch.case_ids) == (SENIOR, (CASE,))
    ws.batches["escalated"] = batch


def test_conflict_after_execution_becomes_a_reversal_request(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _conflicted(ws, executed=True)
    again = ws.ingest(
        _answer(ws, ANALYST, "c.csv", verdict="approve", reviewer_id="analyst-12"), now=LATER
    )
    assert again.accepted == 0
    assert f"only a reviewer of escalation queue '{SENIOR}' may resolve it" in again.messages[0]

    _escalation_batch(ws)
    stale = ws.ingest(
        _answer(ws, ANALYST, "d.csv", verdict="approve", reviewer_id="analyst-7", rationale="late"),
        now=LATER,
    )
    assert stale.accepted == 0
    assert f"case was escalated (conflict) to queue '{SENIOR}'" in stale.messages[0]
    unreasoned = ws.ingest(
        _answer(ws, "escalated", "e.csv", verdict="approve", reviewer_id="uw-ana"), now=LATER
    )
    assert unreasoned.accepted == 0
    assert "a rationale is required to resolve a conflict" in unreasoned.messages[0]
    analyst = ws.ingest(
        _answer(
            ws, "escalated", "f.csv", verdict="approve", reviewer_id="analyst-7", rationale="x"
        ),
        now=LATER,
    )
    assert analyst.accepted == 0 and "does not hold" in analyst.messages[0]  # not authorised

    resolution = _answer(
        ws, "escalated", "g.csv", verdict="decline", reviewer_id="uw-ana",
        rationale="income unverified on recheck", verdict_reason_code="R01",
    )  # fmt: skip
    resolved = ws.ingest(resolution, now=LATER)
    assert (resolved.accepted, resolved.rejected, resolved.conflicts_resolved) == (1, 0, 1)

    with audit_connection(ws.db) as con:
        record = query_frame(con, "SELECT * FROM conflict_resolutions").row(0, named=True)
        reversals = reversal_requests(con, "consumer_credit")
        open_conflicts = query_frame(
            con, "SELECT * FROM review_escalations WHERE kind = 'conflict' AND resolved_at IS NULL"
        )
        effective = query_frame(
            con, "SELECT verdict FROM effective_verdicts WHERE case_id = ?", [CASE]
        )
    assert record["escalation_id"] == CONFLICT_ID
    assert (record["reviewer_id"], record["rationale"]) == (
        "uw-ana",
        "income unverified on recheck",
    )
    assert record["resolved_at"] == LATER
    # A resolution is a signed act: the verified key and the file's signature are kept.
    assert str(record["signer_fingerprint"]).startswith("SHA256:")
    assert "BEGIN SSH SIGNATURE" in str(record["file_signature"])
    assert (record["prior_verdict"], record["executed_action"]) == ("approve", "approve")
    assert record["outcome"] == "reversal_requested"
    assert open_conflicts.is_empty()
    assert reversals.select(
        "case_id", "executed_action", "requested_action", "requested_by", "reason_code"
    ).rows() == [(CASE, "approve", "decline", "uw-ana", "R01")]
    assert reversals["executed_at"][0] == LATER  # linked to the execution it asks to reverse
    assert effective["verdict"].to_list() == ["approve"]  # the executed decision stands

    assert _execute(ws) == 0  # never a second execution
    assert ws.count("SELECT count(*) FROM executions WHERE case_id = ?", [CASE]) == 1
    assert ws.count("SELECT count(*) FROM executions WHERE action = 'decline'") == 0
    after = ws.ingest(
        _answer(
            ws, "escalated", "h.csv", verdict="approve", reviewer_id="comp-chen", rationale="y"
        ),
        now=LATER,
    )
    assert after.accepted == 0 and "conflict was resolved by uw-ana" in after.messages[0]


def test_resolution_before_execution_decides_the_verdict(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    _conflicted(ws, executed=False)
    _escalation_batch(ws)
    resolution = _answer(
        ws, "escalated", "s.csv", verdict="decline", reviewer_id="uw-ben", rationale="confirmed"
    )
    assert ws.ingest(resolution, now=LATER).conflicts_resolved == 1
    assert _execute(ws) == 1
    assert _execute(ws) == 0
    with audit_connection(ws.db) as con:
        executed = query_frame(con, "SELECT action, reviewer_id FROM executions").rows()
        outcome = query_frame(con, "SELECT outcome FROM conflict_resolutions")["outcome"].to_list()
    assert executed == [("decline", "uw-ben")] and outcome == ["changed"]
    assert ws.count("SELECT count(*) FROM reversal_requests") == 0


def _row(reviewer: str, **extra: object) -> dict:
    return {
        "row_number": 2, "case_id": CASE, "batch_id": "b", "reviewer_id": reviewer,
        "verdict": "decline", "rationale": "why", "four_eyes": False, **extra,
    }  # fmt: skip


def test_only_a_fresh_escalation_reviewer_resolves_a_conflict(tmp_path: Path, key: bytes) -> None:
    settings = make_workspace(tmp_path, key).settings
    state = CaseState(
        final_verdict="approve", opinions=(("uw-ana", "approve"),), conflict_to=SENIOR
    )

    def may_work(person: str, queue: str, role: str | None) -> str | None:
        seniors = {"uw-ana", "uw-ben"}  # as the registry grants them (ReviewAuthority)
        return None if person in seniors else f"{person} does not hold {role} ({queue})"

    def outcome(queue: str, reviewer: str):
        return decide(
            [_row(reviewer)], {CASE: state}, domain="consumer_credit", queue=queue,
            settings=settings, file_name="f.csv", may_work=may_work,
        )  # fmt: skip

    other_queue = outcome(ANALYST, "analyst-7")
    assert not other_queue.resolutions
    assert f"escalation queue '{SENIOR}'" in other_queue.rejections[0]["message"]
    unauthorised = outcome(SENIOR, "analyst-7")
    assert not unauthorised.resolutions and "analyst-7" in unauthorised.rejections[0]["message"]
    own_case = outcome(SENIOR, "uw-ana")
    assert "already answered this case" in own_case.rejections[0]["message"]
    fresh = outcome(SENIOR, "uw-ben")
    assert not fresh.rejections and fresh.resolved == [CONFLICT_ID]
    assert fresh.resolutions[0]["outcome"] == "changed"

"""Re-routing keeps executed decisions final (the capacity runs: tests/e2e/)."""

from __future__ import annotations

import polars as pl

from tests.e2e.test_onboarding import FIRST_DAY


def test_keep_executed_restores_the_executed_decision_only() -> None:
    from hitl_gate.execution.final_actions import final_actions, keep_executed

    routed = pl.DataFrame(
        {
            "cid": ["a", "b", "c"],
            "partition_date": [FIRST_DAY] * 3,
            "route": ["human_review", "auto_approve", "human_review"],
            "policy_version": "v2",
            "model_version": "1",
            "reason_codes": [["R1"]] * 3,
        }
    )
    verdicts = pl.DataFrame(schema={"case_id": pl.String, "verdict": pl.String,
                                    "reviewer_id": pl.String})  # fmt: skip
    actions = final_actions(routed, verdicts, "cid", halted=True)
    assert actions["status"].to_list() == ["pending_review", "held", "pending_review"]
    executed = pl.DataFrame(
        {
            "case_id": ["a", "b"],
            "action": ["approve", "decline"],
            "decided_by": ["policy", "reviewer"],
            "reviewer_id": [None, "r9"],
        }  # fmt: skip
    )
    kept = keep_executed(actions, executed)
    assert kept.select("case_id", "status", "action", "decided_by", "reviewer_id").rows() == [
        ("a", "executed", "approve", "policy", None),
        ("b", "executed", "decline", "reviewer", "r9"),
        ("c", "pending_review", None, "reviewer", None),
    ]
    assert kept.columns == actions.columns
    assert keep_executed(actions, executed.clear()).equals(actions)

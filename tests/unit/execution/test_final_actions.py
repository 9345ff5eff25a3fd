"""What executes: every route x verdict x kill-switch combination, and executions kept final."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from hitl_gate.execution.final_actions import final_actions, keep_executed, new_executions

DAY = date(2018, 3, 5)
NOW = datetime(2018, 3, 6, 8, tzinfo=UTC)
VERDICTS = {
    "none": [],
    "approve": ["approve"],
    "decline": ["decline"],
    "escalate": ["escalate"],
    "approve twice": ["approve", "approve"],
    "disagree": ["approve", "decline"],
}


def _routed(route: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cid": [7],  # not a string: case ids are cast
            "partition_date": [DAY],
            "route": [route],
            "policy_version": ["p1"],
            "model_version": ["m1"],
            "reason_codes": [["R1"]],
        }
    )


def _verdicts(verdicts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "case_id": ["7"] * len(verdicts),
            "verdict": verdicts,
            "reviewer_id": [f"r{i}" for i in range(len(verdicts))],
        },
        schema={"case_id": pl.String, "verdict": pl.String, "reviewer_id": pl.String},
    )


# (route, verdicts, halted) -> (status, action, decided_by)
CASES = [
    ("auto_approve", "none", False, "executed", "approve", "policy"),
    ("auto_decline", "none", False, "executed", "decline", "policy"),
    ("auto_approve", "decline", False, "executed", "approve", "policy"),  # never overridden
    ("auto_decline", "approve", False, "executed", "decline", "policy"),
    ("auto_approve", "none", True, "held", None, "policy"),  # kill switch
    ("auto_decline", "none", True, "held", None, "policy"),
    ("human_review", "none", False, "pending_review", None, "reviewer"),
    ("human_review", "approve", False, "executed", "approve", "reviewer"),
    ("human_review", "decline", False, "executed", "decline", "reviewer"),
    ("human_review", "approve twice", False, "executed", "approve", "reviewer"),
    ("human_review", "escalate", False, "held", None, "reviewer"),
    ("human_review", "disagree", False, "conflict", None, "reviewer"),
    ("human_review", "approve", True, "executed", "approve", "reviewer"),  # people still act
    ("human_review", "none", True, "pending_review", None, "reviewer"),
    ("halted", "none", False, "held", None, "policy"),  # neither automatic nor review
    ("halted", "approve", False, "held", None, "policy"),
]


@pytest.mark.parametrize(("route", "verdicts", "halted", "status", "action", "decided_by"), CASES)
def test_one_action_per_case(
    route: str, verdicts: str, halted: bool, status: str, action: str | None, decided_by: str
) -> None:
    out = final_actions(_routed(route), _verdicts(VERDICTS[verdicts]), "cid", halted=halted)
    assert out.height == 1
    row = out.row(0, named=True)
    assert (row["case_id"], row["status"], row["action"], row["decided_by"]) == (
        "7", status, action, decided_by,
    )  # fmt: skip


def test_the_reviewers_reason_code_is_kept_when_given() -> None:
    verdicts = _verdicts(["decline"]).with_columns(pl.lit("V1").alias("verdict_reason_code"))
    out = final_actions(_routed("human_review"), verdicts, "cid")
    assert out["verdict_reason_code"].to_list() == ["V1"]
    assert "verdict_reason_code" not in final_actions(_routed("human_review"), _verdicts([]), "cid")


def _actions() -> pl.DataFrame:
    routed = pl.concat([_routed("auto_approve"), _routed("human_review")]).with_columns(
        pl.Series("cid", [1, 2])
    )
    verdicts = _verdicts([]).clear()
    return final_actions(routed, verdicts, "cid", halted=True)  # 1 held, 2 pending


def _executions(rows: list[tuple[str, str, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema=["case_id", "action", "decided_by", "reviewer_id"], orient="row"
    )


def test_an_executed_case_stays_executed_whatever_it_is_routed_to_now() -> None:
    actions = _actions()
    kept = keep_executed(actions, _executions([("2", "decline", "reviewer", "r7")])).sort("case_id")
    assert kept.select("status", "action", "decided_by", "reviewer_id").rows() == [
        ("held", None, "policy", None),
        ("executed", "decline", "reviewer", "r7"),
    ]
    assert keep_executed(actions, _executions([]).clear()).equals(actions)


def test_new_executions_leave_out_cases_executed_before_so_each_executes_once() -> None:
    actions = final_actions(
        pl.concat([_routed("auto_approve"), _routed("human_review")]).with_columns(
            pl.Series("cid", [1, 2])
        ),
        pl.DataFrame({"case_id": ["2"], "verdict": ["decline"], "reviewer_id": ["r1"]}),
        "cid",
    )
    first = new_executions(actions, _executions([]).clear(), "dom", "run-1", NOW)
    assert first.select("case_id", "action", "decided_by", "reviewer_id").rows() == [
        ("1", "approve", "policy", None),  # the reviewer is named only when a reviewer decided
        ("2", "decline", "reviewer", "r1"),
    ]
    assert set(first["run_id"]) == {"run-1"} and set(first["domain"]) == {"dom"}
    again = new_executions(actions, first, "dom", "run-2", NOW)
    assert again.height == 0

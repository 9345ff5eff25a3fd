"""Adverse-action notices: up to four specific reasons, always at least one, in plain language."""

from __future__ import annotations

import polars as pl

from hitl_gate.core.domain import load_domain
from hitl_gate.execution.adverse_action import adverse_actions


def test_reasons_are_ordered_capped_and_never_empty() -> None:
    domain = load_domain("consumer_credit")
    executed = pl.DataFrame(
        {
            "domain": ["c"] * 4,
            "case_id": ["a", "b", "c", "d"],
            "partition_date": [None] * 4,
            "action": ["decline", "decline", "decline", "approve"],
            "decided_by": ["policy", "reviewer", "reviewer", "policy"],
            "reason_codes": [["R01", "R05", "R02", "R03", "R04"], [], None, ["R01"]],
            "verdict_reason_code": [None, None, "R09", None],
            "route_reason_code": ["D02", "H01", None, "A01"],
        }
    )
    notices = adverse_actions(executed, domain, {"D02": "Bankruptcy rule", "H01": "Large loan"})
    rows = {r["case_id"]: r for r in notices.to_dicts()}
    assert set(rows) == {"a", "b", "c"}  # approvals get no notice
    assert rows["a"]["reason_codes"] == ["D02", "R01", "R05", "R02"]
    assert rows["a"]["reasons"][1] == "Amount requested is high relative to income"
    assert rows["b"]["reasons"] == ["Large loan"]
    assert rows["c"]["reasons"] == ["Bankruptcy on public record"]

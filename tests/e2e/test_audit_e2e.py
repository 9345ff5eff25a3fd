"""Execution hardening and the audit chain on the real demo state, including a killed run."""

from __future__ import annotations

import polars as pl
import pytest

from hitl_gate.app.cli import main
from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
from hitl_gate.audit.run_seal import verify_home, verifying_session
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import AuditKeySettings
from hitl_gate.execution.final_actions import final_actions

pytestmark = pytest.mark.e2e


def _verify(paths: HitlPaths):
    with verifying_session(paths) as con:
        return verify_home(con, paths, None)


def test_final_actions_never_execute_held_or_conflicting_cases() -> None:
    routed = pl.DataFrame(
        {
            "application_id": ["a", "b", "c", "d", "e", "f"],
            "partition_date": [None] * 6,
            "route": ["auto_approve", "auto_decline", "human_review", "human_review",
                      "halted", "human_review"],
            "policy_version": ["1"] * 6,
            "model_version": ["1"] * 6,
            "reason_codes": [["R01"]] * 6,
        }
    )  # fmt: skip
    verdicts = pl.DataFrame(
        {
            "case_id": ["c", "d", "d", "f", "a"],
            "verdict": ["decline", "approve", "decline", "escalate", "decline"],
            "reviewer_id": ["r1", "r1", "r2", "r1", "r9"],
        }
    )
    out = final_actions(routed, verdicts, "application_id").sort("case_id")
    assert out["status"].to_list() == [
        "executed", "executed", "executed", "conflict", "held", "held",
    ]  # fmt: skip
    assert out["action"].to_list() == ["approve", "decline", "decline", None, None, None]


def test_demo_chain_verifies_and_declines_carry_reasons(demo_home: HitlPaths, capsys) -> None:
    pinned = public_key_hex(checkpoint_signer(demo_home, AuditKeySettings()))  # the demo's token
    main(["--home", str(demo_home.home), "audit", "verify", "--public-key", pinned])
    assert "OK (signed by the trusted key" in capsys.readouterr().out
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        declines = int(scalar(con, "SELECT count(*) FROM executions WHERE action = 'decline'"))
        notices = query_frame(con, "SELECT * FROM adverse_actions")
        outcomes = int(scalar(con, "SELECT count(*) FROM outcomes WHERE linked"))
        checkpoints = int(scalar(con, "SELECT count(*) FROM audit_checkpoints"))
    assert declines > 0 and notices.height == declines
    lengths = notices["reasons"].list.len()
    assert lengths.min() >= 1 and lengths.max() <= 4
    assert outcomes > 0
    assert len(list(demo_home.checkpoints_dir.glob("*.json"))) == checkpoints

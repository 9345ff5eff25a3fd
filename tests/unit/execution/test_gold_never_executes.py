"""A gold case never executes and never reaches the outbox, whatever rows someone edits.

The attacker (a careless operator or an insider with database access) makes the gold case look
real to execution: a routed row that approves it automatically, a reviewer verdict on it, even
a forged `executions` row. Only the sealed gold membership decides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.execution.execute import execute_days
from tests.unit.execution.test_execute import DAY, DOMAIN, VERDICTS, _routed, executed_ids

GOLD = "c1"  # shaped like the real ids: the attacker routes it as if it were one


def _declare_gold(db: Path) -> None:
    with audit_connection(db) as con:
        con.execute(
            "INSERT INTO review_gold_cases VALUES (?, ?, 'APP-old', 'decline', 'outcome', "
            "'credit_analyst', ?, ?)",
            [DOMAIN.name, GOLD, DAY, datetime(2018, 3, 5, tzinfo=UTC)],
        )


@pytest.mark.usefixtures("fresh_audit_db")
def test_gold_routed_as_automatic_approval_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    _declare_gold(db)
    routed = _routed(["auto_approve", "auto_approve"])  # c1 forged into the routed day
    done = execute_days(
        DOMAIN, routed, VERDICTS.head(0), partial(audit_connection, db), tmp_path / "out",
        [DAY], run_id="r",
    )  # fmt: skip
    assert executed_ids(db) == ["c0"]
    status = dict(zip(done.actions["case_id"], done.actions["status"], strict=True))
    assert status[GOLD] == "refused_gold"
    assert pl.read_parquet(tmp_path / "out" / f"{DAY}.parquet")["case_id"].to_list() == ["c0"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_gold_with_a_reviewer_verdict_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    _declare_gold(db)
    verdicts = pl.DataFrame({"case_id": [GOLD], "verdict": ["approve"], "reviewer_id": ["ana"]})
    execute_days(
        DOMAIN, _routed(["auto_decline", "human_review"]), verdicts,
        partial(audit_connection, db), tmp_path / "out", [DAY], run_id="r",
    )  # fmt: skip
    assert GOLD not in executed_ids(db)


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_forged_execution_row_of_a_gold_case_never_reaches_the_outbox(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    _declare_gold(db)
    with audit_connection(db) as con:
        con.execute(
            "INSERT INTO executions VALUES (?, ?, ?, 'approve', 'policy', NULL, 'auto_approve', "
            "'p1', 'm1', ['R1'], 'forged', ?)",
            [DOMAIN.name, GOLD, DAY, datetime(2018, 3, 5, tzinfo=UTC)],
        )
    execute_days(
        DOMAIN, _routed(["auto_approve", "auto_approve"]), VERDICTS.head(0),
        partial(audit_connection, db), tmp_path / "out", [DAY], run_id="r",
    )  # fmt: skip
    outbox = pl.read_parquet(tmp_path / "out" / f"{DAY}.parquet")
    assert outbox["case_id"].to_list() == ["c0"]

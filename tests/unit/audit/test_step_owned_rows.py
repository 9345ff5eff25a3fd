"""A row forged before its first seal is no longer sealed like a genuine one (executions and
their adverse-action notices).

The execution step seals the `executions` rows it wrote on the connection that wrote them;
DuckDB lets one process write the file, so nobody can insert in between, and every other seal
(end of run, `hitl audit seal`, retention) refuses new executions as forged. Attacked as the
database writer would: a forged execution inserted after the step and before the run's seal,
one inserted while the step holds the file, and a forged row laundered by re-running the day.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import STEP_OWNED, SealRefused, seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.core.domain import load_domain
from hitl_gate.execution.execute import execute_days
from hitl_gate.execution.final_actions import routed_columns
from hitl_gate.execution.sealed_inputs import input_sealer, output_sealer
from tests.unit.audit.tamper_home import add_row

DAY = date(2018, 3, 5)
DOMAIN = load_domain("consumer_credit")
NO_VERDICTS = pl.DataFrame(
    {"case_id": [], "verdict": [], "reviewer_id": []}, schema=dict.fromkeys(
        ("case_id", "verdict", "reviewer_id"), pl.String)
)  # fmt: skip


def _routed(routes: list[str]) -> pl.DataFrame:
    n = len(routes)
    return pl.DataFrame(
        {
            "application_id": [f"c{i}" for i in range(n)],
            "partition_date": [DAY] * n,
            "route": routes,
            "policy_version": ["p1"] * n,
            "model_version": ["m1"] * n,
            "reason_codes": [["R1"]] * n,
            "route_reason_code": ["D01" if r == "auto_decline" else "A01" for r in routes],
            "carried_from": pl.Series([None] * n, dtype=pl.Date),
        }
    ).select(routed_columns(DOMAIN.case_id))


def _execute(home: Path, routed: pl.DataFrame, run: str, *, seal_outputs: bool = True) -> None:
    key = load_or_create_signing_key(home / "secrets" / "audit.key")
    checkpoints = home / "checkpoints"
    execute_days(
        DOMAIN, routed, NO_VERDICTS, partial(audit_connection, home / "audit.duckdb"),
        home / "outbox", [DAY], run_id=run,
        seal_inputs=input_sealer(key, checkpoints, None, run),
        seal_outputs=output_sealer(key, checkpoints, None, run) if seal_outputs else None,
    )  # fmt: skip


def _end_of_run_seal(home: Path, run: str) -> None:
    key = load_or_create_signing_key(home / "secrets" / "audit.key")
    with audit_connection(home / "audit.duckdb") as con:
        seal_run(con, run, key, home / "checkpoints", owned=STEP_OWNED)


def _forge(home: Path, case: str, action: str = "approve") -> None:
    """The insider's insert: a plausible execution row, with their own SQL session."""
    with audit_connection(home / "audit.duckdb") as con:
        add_row(con, "executions", 99, domain=DOMAIN.name, case_id=case, partition_date=DAY,
                action=action, decided_by="policy", reviewer_id=None)  # fmt: skip


def _verify(home: Path) -> str:
    pinned = public_key_hex(load_or_create_signing_key(home / "secrets" / "audit.key"))
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        return verify_audit(con, home / "checkpoints", pinned).summary()


def _logged(home: Path, key: str) -> int:
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        return int(scalar(con, "SELECT count(*) FROM audit_log WHERE entry LIKE ?",
                          [f'%"key":"{key}"%']))  # fmt: skip


def test_an_execution_forged_between_the_step_and_the_seal_is_refused(tmp_path: Path) -> None:
    _execute(tmp_path, _routed(["auto_approve", "auto_decline", "human_review"]), "run-1")
    assert _logged(tmp_path, "consumer_credit/c0") == 1  # sealed by the step itself
    _forge(tmp_path, "c2")  # the case awaiting review, "executed" by the insider
    with audit_connection(tmp_path / "audit.duckdb") as con:  # and a notice for it
        add_row(con, "adverse_actions", 9, domain=DOMAIN.name, case_id="c2")
    with pytest.raises(SealRefused) as refused:
        _end_of_run_seal(tmp_path, "run-1")
    for table in ("executions", "adverse_actions"):
        assert f"{table} consumer_credit/c2: not written by the step" in str(refused.value)
    assert _logged(tmp_path, "consumer_credit/c2") == 0
    with pytest.raises(SealRefused, match="consumer_credit/c2"):  # and every later seal
        _end_of_run_seal(tmp_path, "cli-seal")
    summary = _verify(tmp_path)
    assert "executions consumer_credit/c2: not in the audit log" in summary
    assert "adverse_actions consumer_credit/c2: not in the audit log" in summary


def test_without_step_ownership_the_forged_row_would_be_sealed(tmp_path: Path) -> None:
    """Control: the general seal without `STEP_OWNED` logs the forged row (the old window)."""
    _execute(tmp_path, _routed(["auto_approve", "human_review"]), "run-1")
    _forge(tmp_path, "c1")
    key = load_or_create_signing_key(tmp_path / "secrets" / "audit.key")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        seal_run(con, "laundering", key, tmp_path / "checkpoints")
    assert _logged(tmp_path, "consumer_credit/c1") == 1


def test_a_rerun_seals_an_interrupted_steps_rows_but_not_a_forged_one(tmp_path: Path) -> None:
    """A step killed after its insert left its executions unsealed; the day's re-run seals
    those it computes itself, never a forged row that acts otherwise, and the step fails
    naming them (no silent success over a tampered table)."""
    routed = _routed(["auto_approve", "auto_decline", "human_review"])
    _execute(tmp_path, routed, "killed", seal_outputs=False)  # the insert committed, no seal
    _forge(tmp_path, "c2", action="approve")  # pending review: the pipeline executes nothing
    with audit_connection(tmp_path / "audit.duckdb") as con:  # and a genuine one turned over
        con.execute("UPDATE executions SET action = 'approve' WHERE case_id = 'c1'")
    with pytest.raises(SealRefused, match=r"(?s)consumer_credit/c1: not written.*/c2: not"):
        _execute(tmp_path, routed, "rerun")
    assert _logged(tmp_path, "consumer_credit/c0") == 1
    assert _logged(tmp_path, "consumer_credit/c1") == _logged(tmp_path, "consumer_credit/c2") == 0
    summary = _verify(tmp_path)
    assert "executions consumer_credit/c1: not in the audit log" in summary
    assert "executions consumer_credit/c2: not in the audit log" in summary


@pytest.mark.slow  # a real second process
def test_nobody_can_insert_while_the_step_holds_the_file(tmp_path: Path) -> None:
    """The step's insert and its seal share one connection; DuckDB's file lock keeps every
    other process out of the file meanwhile (the insider's session fails to open)."""
    database = tmp_path / "audit.duckdb"
    with audit_connection(database) as con:
        con.execute("SELECT 1")
        insider = subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(database)!r})"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert insider.returncode != 0 and "lock" in insider.stderr.lower()

"""The execution stage on a small day: executed once across re-runs, notices, the outbox."""

from __future__ import annotations

from datetime import date
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.execution.execute import InputSealer, execute_days
from hitl_gate.execution.final_actions import routed_columns
from hitl_gate.execution.sealed_inputs import ExecutionRefused, input_sealer
from tests.unit.audit.tamper_home import add_row, seal_as_intake

DAY = date(2018, 3, 5)
DOMAIN = load_domain("consumer_credit")


def _routed(routes: list[str]) -> pl.DataFrame:
    n = len(routes)
    frame = pl.DataFrame(
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
    )
    return frame.select(routed_columns(DOMAIN.case_id))


VERDICTS = pl.DataFrame(
    {"case_id": ["c2", "c3"], "verdict": ["decline", "approve"], "reviewer_id": ["r1", "r2"]}
)


def _record_verdicts(db: Path, verdicts: pl.DataFrame) -> None:
    """The verdict rows intake would have written and sealed (execution checks them against
    the log; no other seal logs a verdict)."""
    with audit_connection(db) as con:
        for n, row in enumerate(verdicts.iter_rows(named=True), start=1):
            add_row(con, "verdicts", n, domain=DOMAIN.name, **row)
        seal_as_intake(con, _key(db.parent), db.parent / "checkpoints", "intake")


def executed_ids(db: Path) -> list[str]:
    """The case ids in `executions`, in order: what was executed, from the table itself."""
    with audit_connection(db, read_only=True) as con:
        return query_frame(con, "SELECT case_id FROM executions ORDER BY case_id")[
            "case_id"
        ].to_list()


def _key(tmp_path: Path) -> CheckpointSigner:
    return load_or_create_signing_key(tmp_path / "secrets" / "audit.key")


def _sealer(tmp_path: Path, run_id: str) -> InputSealer:
    return input_sealer(_key(tmp_path), tmp_path / "checkpoints", None, run_id)


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_day_executes_once_and_its_outbox_is_rewritten(tmp_path: Path) -> None:
    routed = _routed(
        ["auto_approve", "auto_decline", "human_review", "human_review", "human_review"]
    )
    connect = partial(audit_connection, tmp_path / "audit.duckdb")
    outbox = tmp_path / "outbox"
    _record_verdicts(tmp_path / "audit.duckdb", VERDICTS)
    first = execute_days(DOMAIN, routed, VERDICTS, connect, outbox, [DAY], run_id="run-1",
                         seal_inputs=_sealer(tmp_path, "run-1"))  # fmt: skip
    assert first.executed_now == 4 and first.executed_total == 4
    assert first.actions.filter(pl.col("case_id") == "c4")["status"].item() == "pending_review"
    assert first.notices == 2, "one adverse-action notice per executed decline"
    assert pl.read_parquet(outbox / f"{DAY}.parquet").height == 4
    assert not (outbox / "reversal_requests.parquet").exists()

    # Re-routed: everything to review now. Executed cases stay executed, nothing runs twice.
    rerouted = routed.with_columns(pl.lit("human_review").alias("route"))
    again = execute_days(DOMAIN, rerouted, VERDICTS, connect, outbox, [DAY], run_id="run-2",
                         seal_inputs=_sealer(tmp_path, "run-2"))  # fmt: skip
    assert again.executed_now == 0 and again.executed_total == 4
    statuses = dict(zip(again.actions["case_id"], again.actions["status"], strict=True))
    assert statuses == {"c0": "executed", "c1": "executed", "c2": "executed", "c3": "executed",
                        "c4": "pending_review"}  # fmt: skip
    with audit_connection(tmp_path / "audit.duckdb", read_only=True) as con:
        runs = query_frame(con, "SELECT DISTINCT run_id FROM executions")
    assert runs["run_id"].to_list() == ["run-1"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_carried_copies_are_executed_in_their_own_day_only(tmp_path: Path) -> None:
    routed = _routed(["human_review", "human_review"])
    carried = routed.head(1).with_columns(
        pl.lit(date(2018, 3, 6)).alias("partition_date"), pl.lit(DAY).alias("carried_from")
    )
    verdicts = VERDICTS.with_columns(pl.Series("case_id", ["c0", "c1"]))
    _record_verdicts(tmp_path / "audit.duckdb", verdicts)
    done = execute_days(
        DOMAIN,
        pl.concat([routed, carried]),
        verdicts,
        partial(audit_connection, tmp_path / "audit.duckdb"),
        tmp_path / "outbox",
        [DAY],
        run_id="run-1",
        seal_inputs=_sealer(tmp_path, "run-1"),
    )
    assert done.actions.height == 2 and done.executed_now == 2


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_verdict_not_in_the_sealed_log_executes_nothing(tmp_path: Path) -> None:
    """Verdicts forged into the database after the inputs were sealed, or never recorded."""
    routed = _routed(["auto_approve", "human_review", "human_review", "human_review"])
    db = tmp_path / "audit.duckdb"
    connect = partial(audit_connection, db)
    _record_verdicts(db, VERDICTS.head(1))  # c2 recorded and sealed by its intake
    with audit_connection(db) as con:
        con.execute("UPDATE verdicts SET verdict = 'approve' WHERE case_id = 'c2'")  # rewritten
        add_row(con, "verdicts", 9, domain=DOMAIN.name, case_id="c3", verdict="approve",
                reviewer_id="mallory")  # fmt: skip
    verdicts = pl.DataFrame({"case_id": ["c1", "c2", "c3"], "verdict": ["approve"] * 3,
                             "reviewer_id": ["x", "r1", "mallory"]})  # fmt: skip
    done = execute_days(DOMAIN, routed, verdicts, connect, tmp_path / "out", [DAY], run_id="r")
    assert executed_ids(db) == ["c0"]
    assert set(done.refused) == {"c1", "c2", "c3"}
    assert "verdicts consumer_credit/c1: no verdict recorded" in done.refused["c1"]
    assert "verdicts consumer_credit/c2: differs from the sealed entry seq" in done.refused["c2"]
    assert "verdicts consumer_credit/c3: not in the sealed audit log" in done.refused["c3"]
    statuses = dict(zip(done.actions["case_id"], done.actions["status"], strict=True))
    assert statuses["c3"] == "refused_unsealed"


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_deleted_halt_row_refuses_the_domain(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with audit_connection(db) as con:
        add_row(con, "automation_halts", 1, domain=DOMAIN.name, seq=1, halted=True)
        _sealer(tmp_path, "halted")(con)
        con.execute("DELETE FROM automation_halts")  # the kill switch, lifted by SQL
    with pytest.raises(ExecutionRefused, match="automation_halts consumer_credit/1: sealed at"):
        execute_days(DOMAIN, _routed(["auto_approve"]), VERDICTS.clear(), partial(
            audit_connection, db), tmp_path / "out", [DAY], run_id="r",
            seal_inputs=_sealer(tmp_path, "r"))  # fmt: skip
    with audit_connection(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM executions").fetchall()[0][0] == 0

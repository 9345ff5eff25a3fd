"""The execution stage on a small day: executed once across re-runs, notices, the outbox."""

from __future__ import annotations

from datetime import date
from functools import partial
from pathlib import Path

import polars as pl

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.execution.execute import execute_days
from hitl_gate.execution.final_actions import routed_columns

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


def test_a_day_executes_once_and_its_outbox_is_rewritten(tmp_path: Path) -> None:
    routed = _routed(
        ["auto_approve", "auto_decline", "human_review", "human_review", "human_review"]
    )
    connect = partial(audit_connection, tmp_path / "audit.duckdb")
    outbox = tmp_path / "outbox"
    first = execute_days(DOMAIN, routed, VERDICTS, connect, outbox, [DAY], run_id="run-1")
    assert first.executed_now == 4 and first.executed.height == 4
    assert first.actions.filter(pl.col("case_id") == "c4")["status"].item() == "pending_review"
    assert first.notices.height == 2, "one adverse-action notice per executed decline"
    assert pl.read_parquet(outbox / f"{DAY}.parquet").height == 4
    assert not (outbox / "reversal_requests.parquet").exists()

    # Re-routed: everything to review now. Executed cases stay executed, nothing runs twice.
    rerouted = routed.with_columns(pl.lit("human_review").alias("route"))
    again = execute_days(DOMAIN, rerouted, VERDICTS, connect, outbox, [DAY], run_id="run-2")
    assert again.executed_now == 0 and again.executed.height == 4
    statuses = dict(zip(again.actions["case_id"], again.actions["status"], strict=True))
    assert statuses == {"c0": "executed", "c1": "executed", "c2": "executed", "c3": "executed",
                        "c4": "pending_review"}  # fmt: skip
    with audit_connection(tmp_path / "audit.duckdb", read_only=True) as con:
        runs = query_frame(con, "SELECT DISTINCT run_id FROM executions")
    assert runs["run_id"].to_list() == ["run-1"]


def test_carried_copies_are_executed_in_their_own_day_only(tmp_path: Path) -> None:
    routed = _routed(["human_review", "human_review"])
    carried = routed.head(1).with_columns(
        pl.lit(date(2018, 3, 6)).alias("partition_date"), pl.lit(DAY).alias("carried_from")
    )
    done = execute_days(
        DOMAIN,
        pl.concat([routed, carried]),
        VERDICTS.with_columns(pl.Series("case_id", ["c0", "c1"])),
        partial(audit_connection, tmp_path / "audit.duckdb"),
        tmp_path / "outbox",
        [DAY],
        run_id="run-1",
    )
    assert done.actions.height == 2 and done.executed_now == 2

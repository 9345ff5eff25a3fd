"""The execution stage of one run: final actions into `executions` once, notices, the outbox."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from hitl_gate.audit.seal import SealRefused
from hitl_gate.core.database import OpenConnection, insert_new_rows, query_frame
from hitl_gate.core.domain import DomainConfig
from hitl_gate.execution.adverse_action import adverse_actions
from hitl_gate.execution.final_actions import final_actions, keep_executed, new_executions
from hitl_gate.execution.outbox import write_outbox, write_reversal_requests
from hitl_gate.execution.sealed_inputs import ExecutionRefused, check_sealed_inputs
from hitl_gate.review.gold_cases import gold_case_ids
from hitl_gate.review.intake.conflicts import reversal_requests
from policies.capacity import own_rows
from policies.control import halt_state

InputSealer = Callable[[duckdb.DuckDBPyConnection], object]
OutputSealer = Callable[[duckdb.DuckDBPyConnection, pa.Array], object]
"""Seals the `executions` rows of the given entity keys on the connection that inserted them
(`sealed_inputs.output_sealer`)."""


@dataclass(frozen=True)
class ExecutedDays:
    """Each case's final action (`actions`) and what this run changed in the audit DB.

    `refused`: cases not executed because a record they rely on is not in the sealed log as it
    is now (case id -> reason naming table, key and entry; `sealed_inputs`).
    """

    actions: pl.DataFrame
    executed_now: int
    executed: pl.DataFrame  # every execution of the run's days, from the table
    notices: pl.DataFrame
    reversals: pl.DataFrame
    refused: dict[str, str] = field(default_factory=dict)


def execute_days(
    domain: DomainConfig,
    routed: pl.DataFrame,
    verdicts: pl.DataFrame,
    connect: OpenConnection,
    outbox: Path,
    days: list[date],
    *,
    run_id: str,
    seal_inputs: InputSealer | None = None,
    seal_outputs: OutputSealer | None = None,
) -> ExecutedDays:
    """Execute the run's final actions exactly once and write the days' outbox files.

    `routed` holds at least `routed_columns`; its carried copies are left out, since a deferred
    case carried into a later day's review pool is executed and accounted for in its own day
    (its batch names that day), never in the day it was carried to.

    Before acting, `seal_inputs` (a seal limited to `sealed_inputs.RELIED_ON`) seals the
    run's new verdicts, opinions, resolutions, activations and halts; then every record the
    cases rely on is compared with the sealed log (`check_sealed_inputs`): a case whose
    records were forged or changed after sealing is refused, a tampered activation or halt
    refuses the domain (`ExecutionRefused`). Without `seal_inputs` unsealed records refuse
    their cases too: nothing executes on a record the log does not hold.

    `seal_outputs` seals the executions (and their adverse-action notices) this step wrote
    before their connection closes: DuckDB lets one process write the file, so nobody inserts
    in between, and every other seal refuses new rows of both tables (`seal.STEP_OWNED`).
    Rows an interrupted run of this step left unsealed are sealed by a re-run only where it
    computes the same action, decider and reviewer for the case; any other unsealed execution
    (and its notice) stays refused as forged.
    """
    if seal_inputs is not None:
        # A refused seal leaves the tampered rows unsealed: the check below refuses their cases.
        with connect() as con, suppress(SealRefused):
            seal_inputs(con)
    with connect() as con:
        halted = halt_state(con, domain.name).halted
        earlier = query_frame(
            con,
            "SELECT case_id, action, decided_by, reviewer_id FROM executions "
            "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain.name, days],
        )
    routed = own_rows(routed)
    fresh = final_actions(routed, verdicts, domain.case_id, halted=halted)
    actions = keep_executed(fresh, earlier)
    now = datetime.now(UTC)
    with connect() as con:
        # Gold cases (review/gold.py) are never executed, whatever verdicts or routes say.
        gold = gold_case_ids(con, domain.name)
    actions = refuse_gold(actions, gold)
    to_execute = new_executions(actions, earlier, domain.name, run_id, now)
    with connect() as con:
        reviewed = to_execute.filter(pl.col("decided_by") == "reviewer")["case_id"].to_list()
        check = check_sealed_inputs(con, domain.name, reviewed, reviewed)
    if check.domain_problems:
        raise ExecutionRefused(
            f"{domain.name}: execution refused, the policy activation or kill-switch records "
            "differ from the sealed audit log:\n  " + "\n  ".join(check.domain_problems[:10])
        )
    if check.refused:
        to_execute = to_execute.filter(~pl.col("case_id").is_in(list(check.refused)))
        actions = actions.with_columns(
            pl.when(pl.col("case_id").is_in(list(check.refused)))
            .then(pl.lit("refused_unsealed"))
            .otherwise(pl.col("status"))
            .alias("status")
        )
    with connect() as con:
        newly = insert_new_rows(con, "executions", to_execute)
        executed = query_frame(
            con,
            "SELECT * FROM executions WHERE domain = ? "
            "AND partition_date IN (SELECT unnest(?::DATE[])) ORDER BY case_id",
            [domain.name, days],
        )
        # From the table, not from this run: a run killed after the insert still gets them.
        notices = adverse_actions(
            executed.join(
                reason_columns(routed, verdicts, domain.case_id), on="case_id", how="left"
            ),
            domain,
            policy_reason_texts(domain),
        ).with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("issued_at"))
        insert_new_rows(con, "adverse_actions", notices)
        if seal_outputs is not None:
            mine = pl.concat([to_execute["case_id"], agreeing(fresh, earlier)["case_id"]])
            # One Arrow array of keys, not a Python text per case (10M cases: gigabytes).
            seal_outputs(con, (f"{domain.name}/" + mine).to_arrow())
        reversals = reversal_requests(con, domain.name)
    write_outbox(executed.filter(~pl.col("case_id").is_in(list(gold))), outbox, days)
    write_reversal_requests(reversals, outbox)
    return ExecutedDays(actions, newly, executed, notices, reversals, check.refused)


def refuse_gold(actions: pl.DataFrame, gold: set[str]) -> pl.DataFrame:
    """Mark gold cases `refused_gold` with no action, so nothing executes them."""
    if not gold:
        return actions
    is_gold = pl.col("case_id").is_in(list(gold))
    return actions.with_columns(
        pl.when(is_gold).then(pl.lit("refused_gold")).otherwise("status").alias("status"),
        pl.when(is_gold).then(pl.lit(None, pl.String)).otherwise("action").alias("action"),
    )


def agreeing(fresh: pl.DataFrame, earlier: pl.DataFrame) -> pl.DataFrame:
    """Earlier executions whose action, decider and reviewer this run computes too.

    What a re-run may seal of a killed run's unsealed rows: a forged execution that acts
    otherwise than the pipeline would stays unsealed (and refused by every seal).
    """
    keys = ["case_id", "action", "decided_by", "rev"]
    computed = fresh.filter(pl.col("status") == "executed").select(
        "case_id", "action", "decided_by",
        pl.when(pl.col("decided_by") == "reviewer").then(pl.col("reviewer_id")).alias("rev"),
    )  # fmt: skip
    stored = earlier.select("case_id", "action", "decided_by", pl.col("reviewer_id").alias("rev"))
    as_text = [pl.col(k).cast(pl.String) for k in keys]  # an empty frame's columns may be Null
    return stored.select(as_text).join(computed.select(as_text), on=keys, nulls_equal=True)


def reason_columns(routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str) -> pl.DataFrame:
    """Per case: the policy's reason code for its route and the reviewer's reason code."""
    reasons = routed.select(
        pl.col(case_id).cast(pl.String).alias("case_id"),
        *_present(routed, "route_reason_code"),
    )
    reviewer = verdicts.select("case_id", *_present(verdicts, "verdict_reason_code"))
    return reasons.join(reviewer.unique("case_id"), on="case_id", how="left")


def _present(frame: pl.DataFrame, *names: str) -> list[str]:
    """The subset of `names` that `frame` has (verdict frames differ between issues)."""
    return [n for n in names if n in frame.columns]


def policy_reason_texts(domain: DomainConfig) -> dict[str, str]:
    """Reason code -> rule text of the domain's policy (auto-decline reasons in plain words)."""
    from policies.engine import load_policy

    policy = load_policy(domain.policy_path)
    return {rule.reason_code: " ".join(rule.text.split()) for rule in reversed(policy.rules)}

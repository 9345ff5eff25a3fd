"""The execution stage of one run: final actions into `executions` once, notices, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from hitl_gate.core.database import OpenConnection, insert_new_rows, query_frame
from hitl_gate.core.domain import DomainConfig
from hitl_gate.execution.adverse_action import adverse_actions
from hitl_gate.execution.final_actions import final_actions, keep_executed, new_executions
from hitl_gate.execution.outbox import write_outbox, write_reversal_requests
from hitl_gate.review.intake.conflicts import reversal_requests
from policies.capacity import own_rows
from policies.control import halt_state


@dataclass(frozen=True)
class ExecutedDays:
    """Each case's final action (`actions`) and what this run changed in the audit DB."""

    actions: pl.DataFrame
    executed_now: int
    executed: pl.DataFrame  # every execution of the run's days, from the table
    notices: pl.DataFrame
    reversals: pl.DataFrame


def execute_days(
    domain: DomainConfig,
    routed: pl.DataFrame,
    verdicts: pl.DataFrame,
    connect: OpenConnection,
    outbox: Path,
    days: list[date],
    *,
    run_id: str,
) -> ExecutedDays:
    """Execute the run's final actions exactly once and write the days' outbox files.

    `routed` holds at least `routed_columns`; its carried copies are left out, since a deferred
    case carried into a later day's review pool is executed and accounted for in its own day
    (its batch names that day), never in the day it was carried to.
    """
    with connect() as con:
        halted = halt_state(con, domain.name).halted
        earlier = query_frame(
            con,
            "SELECT case_id, action, decided_by, reviewer_id FROM executions "
            "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
            [domain.name, days],
        )
    routed = own_rows(routed)
    actions = keep_executed(final_actions(routed, verdicts, domain.case_id, halted=halted), earlier)
    now = datetime.now(UTC)
    to_execute = new_executions(actions, earlier, domain.name, run_id, now)
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
        reversals = reversal_requests(con, domain.name)
    write_outbox(executed, outbox, days)
    write_reversal_requests(reversals, outbox)
    return ExecutedDays(actions, newly, executed, notices, reversals)


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

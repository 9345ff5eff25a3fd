"""From a policy's routes to the day's decisions: QA sample, kill switch, reviewer capacity.

Order matters and is fixed:
1. `route_cases`: the policy's own route, kept as `proposed_route`.
2. QA sampling sends a deterministic share of automatic routes to review (`qa_sample`).
3. While automation is halted, every remaining automatic route goes to review (`HALT`).
4. Reviewer capacity (`policies.capacity`): per day and queue, the first `daily_capacity`
   cases (by priority, then the policy's `capacity_order` columns, highest first) are
   reviewed that day; the rest are `review_deferred` and carried over to the next day's pool.
   Deferred cases keep the route `human_review`: overflow is never auto-approved, it waits.
`route_override` says which of 2-3 changed a route (`qa_sample`, `halt`), null otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import polars as pl

from policies.capacity import apply_capacity, capacity_report
from policies.engine import route_cases
from policies.model import AUTO_APPROVE, AUTO_DECLINE, HUMAN_REVIEW, Policy
from policies.qa import apply_qa_sampling

__all__ = [
    "CHANGED_COLUMNS",
    "DECISION_EXTRA_SCHEMA",
    "apply_capacity",
    "capacity_report",
    "decide",
    "finish_decisions",
    "finish_inputs",
]

HALT_REASON_CODE = "HALT"
HALT_PRIORITY = 2
# Columns `decide` adds on top of `route_cases`'s.
DECISION_EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "proposed_route": pl.String(),
    "route_override": pl.String(),
    "qa_sample": pl.Boolean(),
    "qa_probability": pl.Float64(),
    "review_deferred": pl.Boolean(),
    "review_day": pl.Date(),
    "carried_from": pl.Date(),
}


def decide(
    policy: Policy,
    cases: pl.DataFrame,
    case_id: str,
    *,
    halted: bool = False,
    backlog: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Route `cases` and apply QA sampling, the kill switch and reviewer capacity.

    `backlog` (stored rows of cases deferred before the first day and still waiting) competes
    for the run's review capacity; see `policies.capacity` for the carried rows this adds.
    """
    routed = route_cases(policy, cases).with_columns(pl.col("route").alias("proposed_route"))
    return finish_decisions(policy, routed, case_id, halted=halted, backlog=backlog)


# Route columns `finish_decisions` may change (in place); it adds DECISION_EXTRA_SCHEMA's others.
CHANGED_COLUMNS = ["route", "route_reason_code", "review_queue", "review_priority"]


def finish_inputs(policy: Policy, case_id: str) -> list[str]:
    """Every column `finish_decisions` and `capacity_report` read from routed cases.

    The day-wide part of deciding (QA strata, reviewer capacity ranks) needs only these, so a
    day routed in slices runs it once on this narrow frame of the whole day.
    """
    qa = policy.qa_sampling
    strata = [qa.strata_column] if qa is not None and qa.strata_column else []
    return list(
        dict.fromkeys(
            [case_id, "partition_date", "proposed_route", *CHANGED_COLUMNS, *strata]
            + list(policy.capacity_order)
        )
    )


def finish_decisions(
    policy: Policy,
    routed: pl.DataFrame,
    case_id: str,
    *,
    halted: bool = False,
    backlog: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """QA sampling, the kill switch and reviewer capacity on cases `route_cases` routed.

    Reads only `finish_inputs` columns; changes `CHANGED_COLUMNS` and adds the others of
    `DECISION_EXTRA_SCHEMA`. Day-wide: QA strata and capacity ranks span every case given.
    """
    routed = apply_qa_sampling(policy, routed, case_id)
    automatic = pl.col("route").is_in([AUTO_APPROVE, AUTO_DECLINE])
    routed = routed.with_columns((automatic & pl.lit(halted)).alias("__halted"))
    routed = routed.with_columns(
        _when_halted(pl.lit(HUMAN_REVIEW), "route"),
        _when_halted(pl.lit(HALT_REASON_CODE), "route_reason_code"),
        _when_halted(pl.lit(policy.queue_for_halt), "review_queue"),
        _when_halted(pl.lit(HALT_PRIORITY, pl.Int32), "review_priority"),
        pl.when("qa_sample")
        .then(pl.lit("qa_sample"))
        .when("__halted")
        .then(pl.lit("halt"))
        .otherwise(pl.lit(None, pl.String))
        .alias("route_override"),
    ).drop("__halted")
    return apply_capacity(policy, routed, backlog)


def _when_halted(value: pl.Expr, column: str) -> pl.Expr:
    return pl.when("__halted").then(value).otherwise(column).alias(column)


def with_queue_capacity(policy: Policy, capacities: Mapping[str, int | None]) -> Policy:
    """The policy with reviewer capacity filled in from the review settings' queues.

    Capacity is a fact about the reviewing team, so its home is the domain's review settings
    (`review.yaml`); a capacity written in the policy file itself still wins, so a policy
    team can tighten it for one version.
    """
    declared = {q: c for q, c in capacities.items() if c is not None}
    merged = {**declared, **policy.queue_capacity}
    return policy if merged == policy.queue_capacity else replace(policy, queue_capacity=merged)

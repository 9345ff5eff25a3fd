"""What a policy change would do: re-route stored past cases under two policies and compare.

Cases come from the warehouse (`<home>/warehouse/<domain>/routed_decisions/<day>.parquet`):
each row holds the inputs, features and scores the case was routed with, so replaying a
candidate needs no model or feature store. The routing columns stored with them are dropped
and both policies route the same rows with the same engine (`policies.decide`), kill switch
off, so the comparison is about the policies alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from policies.capacity import own_rows
from policies.decide import DECISION_EXTRA_SCHEMA, capacity_report, decide
from policies.engine import ROUTE_SCHEMA
from policies.model import Policy
from policies.route_risk import route_risk

ROUTES = ("auto_approve", "auto_decline", "human_review")
_DERIVED = [*ROUTE_SCHEMA, *DECISION_EXTRA_SCHEMA]


def stored_case_files(warehouse: Path, domain: str, start: date, end: date) -> list[Path]:
    """The stored routed-case files of `domain` for the days `start..end` that exist."""
    folder = warehouse / domain / "routed_decisions"
    return sorted(p for p in folder.glob("*.parquet") if start <= date.fromisoformat(p.stem) <= end)


def load_stored_cases(files: list[Path]) -> pl.DataFrame:
    """Stored cases without their routing columns, ready to be routed again."""
    if not files:
        raise FileNotFoundError("no stored routed cases for those days: run the pipeline first")
    frame = pl.concat([pl.read_parquet(p) for p in files], how="diagonal_relaxed")
    return frame.drop([c for c in _DERIVED if c in frame.columns])


@dataclass(frozen=True)
class WhatIf:
    """The comparison of a candidate with the active policy on the same cases."""

    cases: int
    transitions: pl.DataFrame  # active route (rows) x candidate route (columns), counts
    workload: pl.DataFrame  # per review queue: cases under each policy, capacity, deferred
    changed: int
    human_declined_now_approved: int | None
    risk: pl.DataFrame  # per policy (active, candidate) and route: expected/observed bad rate


def compare(
    active: Policy,
    candidate: Policy,
    cases: pl.DataFrame,
    case_id: str,
    verdicts: pl.DataFrame | None = None,
    outcomes: pl.DataFrame | None = None,
    bad_outcomes: Sequence[str] = (),
) -> WhatIf:
    """Route `cases` under both policies; `verdicts` (case_id, verdict) enables the
    "would auto-approve what a human declined" count; `outcomes` (case_id, outcome) and the
    `bad_outcomes` values the observed bad rate per route (`policies.route_risk`)."""
    decided_before = own_rows(decide(active, cases, case_id))
    before = decided_before.select(case_id, pl.col("route").alias("active"))
    after = own_rows(decide(candidate, cases, case_id))
    both = before.join(
        after.select(case_id, pl.col("route").alias("candidate")), on=case_id, how="inner"
    )
    transitions = transition_matrix(both, "active", "candidate")
    workload = _workload(active, candidate, cases, case_id, after)
    declined = None
    if verdicts is not None and verdicts.height:
        declined = (
            both.join(verdicts.select(pl.col("case_id").alias(case_id), "verdict"), on=case_id)
            .filter((pl.col("verdict") == "decline") & (pl.col("candidate") == "auto_approve"))
            .height
        )
    changed = both.filter(pl.col("active") != pl.col("candidate")).height
    risk = route_risk(
        {"active": decided_before, "candidate": after}, case_id, outcomes, bad_outcomes
    )
    return WhatIf(both.height, transitions, workload, changed, declined, risk)


def transition_matrix(frame: pl.DataFrame, rows: str, columns: str) -> pl.DataFrame:
    """Counts of cases per (`rows` route, `columns` route): one row per `rows` route, one
    column per route, zeros included so every matrix has the same shape."""
    matrix = (
        frame.group_by(rows, columns).len().pivot(on=columns, index=rows, values="len").fill_null(0)
    )
    for route in ROUTES:
        if route not in matrix.columns:
            matrix = matrix.with_columns(pl.lit(0, pl.UInt32).alias(route))
    return matrix.select(rows, *ROUTES).sort(rows)


def _workload(
    active: Policy, candidate: Policy, cases: pl.DataFrame, case_id: str, after: pl.DataFrame
) -> pl.DataFrame:
    """Review cases per queue under each policy, and the candidate's capacity and overflow."""
    before = own_rows(decide(active, cases, case_id))
    per_queue = [
        queue_counts(before).rename({"cases": "active_cases"}),
        queue_counts(after).rename({"cases": "candidate_cases"}),
    ]
    joined = per_queue[0].join(per_queue[1], on="review_queue", how="full", coalesce=True)
    capacity = (
        capacity_report(candidate, after)
        .group_by("review_queue")
        .agg(
            pl.col("daily_capacity").first().alias("candidate_daily_capacity"),
            pl.col("deferred").sum().alias("candidate_deferred"),
        )
    )
    return (
        joined.join(capacity, on="review_queue", how="left")
        .with_columns(pl.col("active_cases", "candidate_cases").fill_null(0))
        .with_columns((pl.col("candidate_cases") - pl.col("active_cases")).alias("change"))
        .sort("review_queue")
    )


def queue_counts(decided: pl.DataFrame) -> pl.DataFrame:
    return (
        decided.filter(pl.col("route") == "human_review")
        .group_by("review_queue")
        .agg(pl.len().cast(pl.Int64).alias("cases"))
    )

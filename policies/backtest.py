"""Backtest: replay a candidate policy on recorded cases and compare with what really happened.

`whatif` compares two policies on the same replayed cases. A backtest compares the candidate
with the *recorded* decisions (audit table `decisions`: the route each case actually got, with
QA samples, halts and capacity as they were), and brings in what was learnt since: reviewer
verdicts (`verdicts`) and later outcomes (`outcomes`). The candidate sees each case exactly as
it was routed: its inputs, features and scores from the stored routed-case partitions (the
rows the live policy read), never a re-scored or re-featurised version.

The key safety figure is how many cases a reviewer declined that the candidate would approve
automatically, and how many cases that later went bad it would approve automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame
from policies.capacity import own_rows
from policies.decide import decide
from policies.model import AUTO_APPROVE, AUTO_DECLINE, Policy
from policies.whatif import queue_counts, transition_matrix

RECORDED_SQL = """
SELECT d.case_id, d.route AS recorded_route, d.review_queue AS recorded_queue,
       d.policy_version AS recorded_policy, v.verdict, o.outcome
FROM decisions d
LEFT JOIN verdicts v ON v.domain = d.domain AND v.case_id = d.case_id
LEFT JOIN (
    SELECT case_id, arg_max(outcome, observed_on) AS outcome
    FROM outcomes WHERE domain = ? GROUP BY case_id
) o ON o.case_id = d.case_id
WHERE d.domain = ? AND d.partition_date BETWEEN ? AND ?
"""


def recorded_decisions(
    con: duckdb.DuckDBPyConnection, domain: str, start: date, end: date
) -> pl.DataFrame:
    """Per recorded case: its route and queue, the verdict and the latest outcome, if any."""
    return query_frame(con, RECORDED_SQL, [domain, domain, start, end])


@dataclass(frozen=True)
class Backtest:
    """What the candidate would have done with recorded cases, next to what was done."""

    cases: int
    transitions: pl.DataFrame  # recorded route (rows) x candidate route (columns)
    workload: pl.DataFrame  # per review queue: recorded, candidate, change, candidate deferred
    changed: int
    with_verdict: int
    human_declined_auto_approved: int
    human_approved_auto_declined: int
    outcomes: pl.DataFrame  # per group of cases: with a known outcome, bad, bad rate


def backtest(
    candidate: Policy,
    cases: pl.DataFrame,
    recorded: pl.DataFrame,
    case_id: str,
    bad_outcomes: Sequence[str] = (),
) -> Backtest:
    """Route `cases` with `candidate` and compare with `recorded` (see `recorded_decisions`).

    Only cases present in both are compared; `bad_outcomes` are the outcome values that count
    as the decision having gone wrong (the domain's positive label values).
    """
    decided = own_rows(decide(candidate, cases, case_id)).with_columns(
        pl.col(case_id).cast(pl.String).alias("case_id")
    )
    both = decided.select(
        "case_id", pl.col("route").alias("candidate"), "review_queue", "review_deferred"
    ).join(recorded, on="case_id", how="inner")
    verdict = pl.col("verdict")
    approve = pl.col("candidate") == AUTO_APPROVE
    flags = both.select(
        verdict.is_not_null().sum().alias("with_verdict"),
        ((verdict == "decline") & approve).sum().alias("declined_approved"),
        ((verdict == "approve") & (pl.col("candidate") == AUTO_DECLINE)).sum().alias("approved"),
        (pl.col("candidate") != pl.col("recorded_route")).sum().alias("changed"),
    ).row(0, named=True)
    return Backtest(
        cases=both.height,
        transitions=transition_matrix(both, "recorded_route", "candidate"),
        workload=_workload(both),
        changed=int(flags["changed"]),
        with_verdict=int(flags["with_verdict"]),
        human_declined_auto_approved=int(flags["declined_approved"]),
        human_approved_auto_declined=int(flags["approved"]),
        outcomes=_outcomes(both, list(bad_outcomes)),
    )


def _workload(both: pl.DataFrame) -> pl.DataFrame:
    """Review cases per queue as recorded and under the candidate, and the candidate's overflow."""
    recorded = queue_counts(
        both.select(
            pl.col("recorded_route").alias("route"), pl.col("recorded_queue").alias("review_queue")
        )
    ).rename({"cases": "recorded_cases"})
    candidate = (
        both.filter(pl.col("candidate") == "human_review")
        .group_by("review_queue")
        .agg(
            pl.len().cast(pl.Int64).alias("candidate_cases"),
            pl.col("review_deferred").sum().cast(pl.Int64).alias("candidate_deferred"),
        )
    )
    return (
        recorded.join(candidate, on="review_queue", how="full", coalesce=True)
        .with_columns(
            pl.col("recorded_cases", "candidate_cases", "candidate_deferred").fill_null(0)
        )
        .with_columns((pl.col("candidate_cases") - pl.col("recorded_cases")).alias("change"))
        .sort("review_queue", nulls_last=True)
    )


def _outcomes(both: pl.DataFrame, bad: list[str]) -> pl.DataFrame:
    """Known and bad outcomes among the cases approved automatically, recorded vs candidate."""
    recorded = pl.col("recorded_route") == AUTO_APPROVE
    candidate = pl.col("candidate") == AUTO_APPROVE
    groups = {
        "auto-approved as recorded": recorded,
        "auto-approved by candidate": candidate,
        "newly auto-approved by candidate": candidate & ~recorded,
    }
    known = pl.col("outcome").is_not_null()
    rows = both.select(
        *(
            pl.struct(
                pl.lit(name).alias("cases"),
                mask.sum().alias("count"),
                (mask & known).sum().alias("with_outcome"),
                (mask & pl.col("outcome").is_in(bad)).sum().alias("bad_outcome"),
            ).alias(name)
            for name, mask in groups.items()
        )
    ).row(0)
    return pl.DataFrame(list(rows)).with_columns(
        (pl.col("bad_outcome") / pl.col("with_outcome")).alias("bad_rate")
    )

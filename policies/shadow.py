"""Shadow routing: a candidate policy decides the same live cases, stored, never acted on.

The live run routes with the policy in force as always; when a candidate is set to run in
shadow (`hitl policy shadow set FILE`), the same assembled cases are also decided by the
candidate (same engine, same halt state, its own QA sample and capacity) and one row per case
goes to `shadow_decisions` next to the live routes. The comparison is on each policy's own
route (`proposed_route`), so a QA sample or a halt does not count as a policy difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from policies.capacity import own_rows
from policies.decide import decide
from policies.model import AUTO_APPROVE, Policy
from policies.whatif import transition_matrix

SHADOW_COLUMNS = [
    "domain", "case_id", "partition_date", "policy_version", "policy_digest", "proposed_route",
    "route", "route_rule_id", "route_reason_code", "rules_fired", "review_queue",
    "live_proposed_route", "live_route", "live_policy_version", "run_id", "decided_at",
]  # fmt: skip


def shadow_decisions(
    shadow: Policy,
    cases: pl.DataFrame,
    live: pl.DataFrame,
    *,
    case_id: str,
    domain: str,
    halted: bool,
    run_id: str,
    now: datetime,
) -> pl.DataFrame:
    """The shadow policy's decision of every live case, with the live route beside it."""
    decided = own_rows(decide(shadow, cases, case_id, halted=halted))
    live_routes = own_rows(live).select(
        pl.col(case_id).cast(pl.String).alias("case_id"),
        pl.col("proposed_route").alias("live_proposed_route"),
        pl.col("route").alias("live_route"),
        pl.col("policy_version").alias("live_policy_version"),
    )
    return (
        decided.with_columns(pl.col(case_id).cast(pl.String).alias("case_id"))
        .join(live_routes, on="case_id", how="inner")
        .with_columns(
            pl.lit(domain).alias("domain"),
            pl.lit(run_id).alias("run_id"),
            pl.lit(now).alias("decided_at"),
        )
        .select(SHADOW_COLUMNS)
    )


@dataclass(frozen=True)
class ShadowComparison:
    """How the shadow policy's own routes differ from the live policy's on the same cases."""

    cases: int
    agreement: float
    transitions: pl.DataFrame  # live proposed route (rows) x shadow proposed route (columns)
    newly_auto_approved: int  # the shadow would approve automatically, live did not


def compare_shadow(rows: pl.DataFrame) -> ShadowComparison:
    """Summarise `shadow_decisions` rows (of one run or any selection of them)."""
    same = (rows["proposed_route"] == rows["live_proposed_route"]).sum()
    newly = rows.filter(
        (pl.col("proposed_route") == AUTO_APPROVE) & (pl.col("live_proposed_route") != AUTO_APPROVE)
    ).height
    return ShadowComparison(
        cases=rows.height,
        agreement=float(same / rows.height) if rows.height else 1.0,
        transitions=transition_matrix(rows, "live_proposed_route", "proposed_route"),
        newly_auto_approved=newly,
    )

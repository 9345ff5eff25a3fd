"""What executes: one final action per case, from its automatic route or its reviewers' verdicts.

Only two things are ever executed: an automatic route, or a single final reviewer verdict that
is an action (approve/decline). Everything else is held. A case executed once stays executed
(`keep_executed`), whatever later re-routing says.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from policies.capacity import CARRIED_FROM

AUTOMATIC_ACTIONS = {"auto_approve": "approve", "auto_decline": "decline"}
REVIEW_ACTIONS = ("approve", "decline")


def routed_columns(case_id: str) -> list[str]:
    """The routed columns execution reads (of 87): `final_actions`, reasons, own rows."""
    return [case_id, "partition_date", "route", "policy_version", "model_version",
            "reason_codes", "route_reason_code", CARRIED_FROM]  # fmt: skip


def slice_verdicts(verdicts: pl.DataFrame | pl.LazyFrame, case_ids: pl.Series) -> pl.DataFrame:
    """The verdicts of `case_ids` (a slice's cases) alone.

    Given the stored day as a scan (`pl.LazyFrame`), each slice reads only its own cases'
    verdicts, so the step never holds the day's verdicts (in production about the reviewed
    share of the day) nor groups them whole once per slice.
    """
    ids = case_ids.cast(pl.String).implode()
    return verdicts.lazy().filter(pl.col("case_id").cast(pl.String).is_in(ids)).collect()


def final_actions(
    routed: pl.DataFrame, verdicts: pl.DataFrame, case_id: str, *, halted: bool = False
) -> pl.DataFrame:
    """Combine automatic routes and reviewer verdicts into one action per case.

    Only two things are ever executed: an automatic route, or a single final reviewer verdict
    that is an action (approve/decline). Everything else is held, never executed:
    `pending_review` (no verdict yet), `conflict` (reviewers disagree on the case) and `held`
    (a route that is neither automatic nor review, e.g. halted, or a verdict that is not an
    action, e.g. escalate). A verdict never overrides an automatic route. While automation is
    halted (kill switch), automatic routes are `held` too, even when they were routed before
    the halt; reviewers' verdicts still execute.
    """
    per_case = verdicts.group_by("case_id").agg(
        pl.col("verdict").first(),
        pl.col("reviewer_id").first(),
        pl.col("verdict").n_unique().alias("verdict_variants"),
        *(
            [pl.col("verdict_reason_code").first()]
            if "verdict_reason_code" in verdicts.columns
            else []
        ),
    )
    automatic = pl.col("route").replace_strict(AUTOMATIC_ACTIONS, default=None)
    reviewed = pl.col("route") == "human_review"
    return (
        routed.select(
            pl.col(case_id).cast(pl.String).alias("case_id"),
            "partition_date",
            "route",
            "policy_version",
            "model_version",
            "reason_codes",
        )
        .join(per_case, on="case_id", how="left")
        .with_columns(
            pl.when(reviewed)
            .then(pl.lit("reviewer"))
            .otherwise(pl.lit("policy"))
            .alias("decided_by"),
            pl.when(reviewed & pl.col("verdict").is_null())
            .then(pl.lit("pending_review"))
            .when(reviewed & (pl.col("verdict_variants") > 1))
            .then(pl.lit("conflict"))
            .when(reviewed & pl.col("verdict").is_in(list(REVIEW_ACTIONS)))
            .then(pl.lit("executed"))
            .when(~reviewed & automatic.is_not_null() & ~pl.lit(halted))
            .then(pl.lit("executed"))
            .otherwise(pl.lit("held"))
            .alias("status"),
        )
        .with_columns(
            pl.when(pl.col("status") != "executed")
            .then(pl.lit(None, pl.String))
            .when(reviewed)
            .then(pl.col("verdict"))
            .otherwise(automatic)
            .alias("action")
        )
    )


def keep_executed(actions: pl.DataFrame, executed: pl.DataFrame) -> pl.DataFrame:
    """Executed decisions are final: a case already in `executions` keeps its executed action.

    Re-routing a day that was executed before (another policy in force, a rollback, the kill
    switch) may give a case another route; the new route is recorded in `decisions`, but the
    case is never re-executed, held or sent back to pending. Its status, action and decider
    come from the stored execution, so the day's accounting counts it once, as executed.
    """
    if executed.height == 0:
        return actions
    done = executed.select(
        "case_id",
        pl.col("action").alias("__action"),
        pl.col("decided_by").alias("__decided_by"),
        pl.col("reviewer_id").alias("__reviewer_id"),
    )
    was = pl.col("__action").is_not_null()
    return (
        actions.join(done, on="case_id", how="left")
        .with_columns(
            pl.when(was).then(pl.lit("executed")).otherwise("status").alias("status"),
            pl.when(was).then("__action").otherwise("action").alias("action"),
            pl.when(was).then("__decided_by").otherwise("decided_by").alias("decided_by"),
            pl.when(was).then("__reviewer_id").otherwise("reviewer_id").alias("reviewer_id"),
        )
        .drop("__action", "__decided_by", "__reviewer_id")
    )


def new_executions(
    actions: pl.DataFrame, earlier: pl.DataFrame, domain: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """The `executions` rows of this run: executed actions of cases not executed before.

    Exactly once: a case in `earlier` (already in `executions`) is never executed again; the
    reviewer is named only when a reviewer decided.
    """
    executable = pl.col("status") == "executed"
    return actions.filter(
        executable & ~pl.col("case_id").is_in(earlier["case_id"].implode())
    ).select(
        pl.lit(domain).alias("domain"),
        "case_id",
        "partition_date",
        "action",
        "decided_by",
        pl.when(pl.col("decided_by") == "reviewer")
        .then(pl.col("reviewer_id"))
        .alias("reviewer_id"),
        "route",
        "policy_version",
        "model_version",
        "reason_codes",
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("executed_at"),
    )

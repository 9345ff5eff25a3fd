"""Reviewer capacity: each queue reviews at most `daily_capacity` cases a day; the rest wait.

Days are scheduled in order. A day's pool for a queue is the cases still waiting from earlier
days (the *backlog*: carried over, never auto-approved) plus the day's new review cases; the
first `daily_capacity` of the pool, ordered by priority, then the policy's `capacity_order`
columns (highest risk/amount first, unknown first of all), then the older day first, are
reviewed that day; the rest wait for the next day.

Output rows (see `apply_capacity`):
- every input case once, in input order, with `review_deferred` (not reviewed on its own day)
  and `review_day` (the day it is scheduled for review in this run, null when it still waits
  or is not a review case);
- plus one *carried* copy per case scheduled on a later day than its own: `partition_date` is
  the review day (so the review export of that day finds it) and `carried_from` its own day
  (so execution and accounting keep it in its own partition). Backlog cases from before the
  run that get scheduled appear only as carried copies.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from policies.model import HUMAN_REVIEW, Policy

CARRIED_FROM = "carried_from"
REVIEW_DAY = "review_day"
_DAY = "partition_date"
_HELPERS = ["__row", "__origin", "__cap", "__sched"]
_ONE_DAY = date(1970, 1, 1)
_UNBOUNDED = 2**62


def own_rows(decided: pl.DataFrame) -> pl.DataFrame:
    """Each case once, on its own day: without the carried copies `apply_capacity` adds.

    A frame without carried copies (a routed slice) is returned as it is: a filter aligns
    every column's chunks with the mask's, so on a slice put together from several stored
    stages it copied all 87 columns (+0.7 GB and 1 CPU s a million cases) to drop nothing.
    """
    if CARRIED_FROM not in decided.columns or decided.get_column(CARRIED_FROM).is_null().all():
        return decided
    return decided.filter(pl.col(CARRIED_FROM).is_null())


def queue_capacity(policy: Policy) -> pl.Expr:
    """The daily capacity of each row's review queue (null: unbounded)."""
    return pl.col("review_queue").replace_strict(
        policy.queue_capacity, default=None, return_dtype=pl.Int64
    )


def apply_capacity(
    policy: Policy, routed: pl.DataFrame, backlog: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Schedule review cases day by day within capacity, carrying the overflow over.

    `backlog`: cases deferred on days before this run's first day and still waiting (their
    stored routed rows, with their own `partition_date`); they compete for capacity with the
    run's cases and are never re-routed.
    """
    day_known = _DAY in routed.columns
    # Without days (a plain frame of cases) everything is one day.
    frame = routed if day_known else routed.with_columns(pl.lit(_ONE_DAY).alias(_DAY))
    frame = frame.with_columns(pl.lit(None, pl.Date).alias(CARRIED_FROM))
    if backlog is not None and backlog.height and day_known:
        waiting = backlog.select([c for c in frame.columns if c in backlog.columns])
        frame = pl.concat([frame, waiting], how="diagonal_relaxed")
    backlog_row = pl.int_range(pl.len()) >= routed.height
    work = frame.with_row_index("__row").with_columns(
        pl.col(_DAY).alias("__origin"),
        # A waiting case whose queue is no longer bounded is reviewed on the first day.
        pl.when(backlog_row)
        .then(queue_capacity(policy).fill_null(_UNBOUNDED))
        .otherwise(queue_capacity(policy))
        .alias("__cap"),
    )
    # Only the ordering keys are ranked: sorting the full decision rows (85 columns at a
    # million cases) would copy the whole day twice for a result of two columns.
    rank_columns = ["__row", "__origin", "__cap", "review_queue", "review_priority"]
    bounded = work.filter((pl.col("route") == HUMAN_REVIEW) & pl.col("__cap").is_not_null()).select(
        *rank_columns, *(c for c in policy.capacity_order if c not in rank_columns)
    )
    days = frame.get_column(_DAY).head(routed.height).unique().sort().to_list()
    work = work.join(_schedule(policy, bounded, days), on="__row", how="left")
    waits = (pl.col("route") == HUMAN_REVIEW) & pl.col("__cap").is_not_null()
    own = work.filter(pl.col("__row") < routed.height).with_columns(
        (waits & (pl.col("__sched").is_null() | (pl.col("__sched") != pl.col("__origin"))))
        .fill_null(False)
        .alias("review_deferred"),
        pl.when(pl.col("route") == HUMAN_REVIEW)
        .then(pl.when(pl.col("__cap").is_null()).then(pl.col(_DAY)).otherwise("__sched"))
        .alias(REVIEW_DAY),
    )
    carried = work.filter(
        pl.col("__sched").is_not_null() & (pl.col("__sched") != pl.col("__origin"))
    ).with_columns(
        pl.col("__sched").alias(_DAY),
        pl.col("__origin").alias(CARRIED_FROM),
        pl.lit(False).alias("review_deferred"),
        pl.col("__sched").alias(REVIEW_DAY),
    )
    out = pl.concat([own, carried], how="vertical_relaxed").drop(_HELPERS)
    return out if day_known else out.drop(_DAY)


def _schedule(policy: Policy, bounded: pl.DataFrame, days: list[date]) -> pl.DataFrame:
    """`__row` -> `__sched` (the day it is reviewed) for the bounded review cases scheduled."""
    schema = {"__row": pl.UInt32(), "__sched": pl.Date()}
    if bounded.height == 0:
        return pl.DataFrame(schema=schema)
    keys = [
        pl.col("review_priority"),
        *(-_numeric(c) for c in policy.capacity_order),
        pl.col("__origin"),
        pl.col("__row"),
    ]
    pool = bounded.filter(pl.col("__origin") < days[0])
    taken = []
    for day in days:
        new = bounded.filter(pl.col("__origin") == day)
        ranked = (
            pl.concat([pool, new])
            .sort(keys, nulls_last=True)
            .with_columns((pl.int_range(pl.len()).over("review_queue") + 1).alias("__rank"))
        )
        fits = pl.col("__rank") <= pl.col("__cap")
        taken.append(ranked.filter(fits).select("__row", pl.lit(day, pl.Date).alias("__sched")))
        pool = ranked.filter(~fits).drop("__rank")
    return pl.concat(taken).cast(schema)  # type: ignore[arg-type]


def _numeric(column: str) -> pl.Expr:
    """Descending order key: higher risk or amount first, unknown (null) first of all."""
    return pl.col(column).cast(pl.Float64).fill_null(float("inf"))


def capacity_report(
    policy: Policy, decided: pl.DataFrame, backlog: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per day and review queue: new review cases, carried in, capacity, deferred, backlog.

    `backlog_after` is how many cases of the queue still wait at the end of the day (earlier
    backlog included); `backlog_days` how many days of capacity that backlog is.
    """
    day = pl.col(_DAY) if _DAY in decided.columns else pl.lit(None, pl.Date)
    carried = pl.col(CARRIED_FROM) if CARRIED_FROM in decided.columns else pl.lit(None, pl.Date)
    frame = decided.with_columns(day.alias("day"), carried.alias("__carried"))
    review = frame.filter(pl.col("route") == HUMAN_REVIEW)
    own = review.filter(pl.col("__carried").is_null())
    first = own.get_column("day").min()
    counts = own.group_by("day", "review_queue").agg(
        pl.len().alias("routed"), pl.col("review_deferred").sum().alias("deferred")
    )
    carried_in = (
        review.filter(pl.col("__carried").is_not_null())
        .group_by("day", "review_queue")
        .agg(pl.len().alias("carried_in"))
    )
    report = (
        counts.join(carried_in, on=["day", "review_queue"], how="full", coalesce=True)
        .with_columns(pl.col("routed", "deferred", "carried_in").fill_null(0).cast(pl.Int64))
        .with_columns(queue_capacity(policy).alias("daily_capacity"))
    )
    # Waiting at the end of a day = cases arrived (own day <= day, backlog) - cases reviewed.
    arrivals = own.filter(pl.col("review_deferred")).select(
        "review_queue", pl.col("day").alias("at"), pl.lit(1).alias("delta")
    )
    leaves = own.filter(pl.col("review_deferred") & pl.col(REVIEW_DAY).is_not_null()).select(
        "review_queue", pl.col(REVIEW_DAY).alias("at"), pl.lit(-1).alias("delta")
    )
    parts = [arrivals, leaves]
    if backlog is not None and backlog.height and first is not None:
        parts.append(
            backlog.select("review_queue", pl.lit(first).alias("at"), pl.lit(1).alias("delta"))
        )
        parts.append(
            review.filter(pl.col("__carried") < first).select(
                "review_queue", pl.col("day").alias("at"), pl.lit(-1).alias("delta")
            )
        )
    events = pl.concat([p.cast({"at": pl.Date, "delta": pl.Int64}) for p in parts])
    waiting = (
        report.select("day", "review_queue")
        .join(events, on="review_queue", how="left")
        .filter(pl.col("at") <= pl.col("day"))
        .group_by("day", "review_queue")
        .agg(pl.col("delta").sum().alias("backlog_after"))
    )
    return (
        report.join(waiting, on=["day", "review_queue"], how="left")
        .with_columns(pl.col("backlog_after").fill_null(0).cast(pl.Int64))
        .with_columns(
            (pl.col("backlog_after") / pl.col("daily_capacity")).ceil().alias("backlog_days")
        )
        .select(
            "day",
            "review_queue",
            "routed",
            "carried_in",
            "daily_capacity",
            "deferred",
            "backlog_after",
            "backlog_days",
        )  # fmt: skip
        .sort("day", "review_queue", nulls_last=True)
    )

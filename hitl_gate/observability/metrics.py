"""Decision metrics per day, in long format (metric, dimension, key, value).

Input is one row per case as the `case_stage_times` view gives it (route, band, reviewer,
verdict and the time each stage was reached). Long format keeps the DuckDB table stable while
metrics are added, and makes "one metric over time" a plain filter.

The *proposed action* of a case sent to review is the action its risk band implies: `decline`
for the declared decline bands (by default the upper half of the model's bands), `approve`
otherwise. A reviewer's verdict that differs from it is an *override*. This keeps the override
rate defined for every review case, whatever rule sent it to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl

APPROVE, DECLINE = "approve", "decline"
ALL = "all"
METRIC_SCHEMA = pl.Schema(
    {
        "partition_date": pl.Date,
        "metric": pl.String,
        "dimension": pl.String,
        "key": pl.String,
        "value": pl.Float64,
    }
)
STAGES = ("ingested", "validated", "scored", "routed", "exported", "verdict_received", "executed")


def default_decline_bands(bands: Sequence[str]) -> list[str]:
    """The upper half of the declared bands (ascending risk); the middle band implies approve."""
    ordered = list(bands)
    return ordered[(len(ordered) + 1) // 2 :]


def seconds_between(start: str, end: str) -> pl.Expr:
    """Seconds from column `start` to column `end` (null when either is missing)."""
    return (pl.col(end) - pl.col(start)).dt.total_milliseconds() / 1000.0


def with_review_facts(cases: pl.DataFrame, decline_bands: Sequence[str]) -> pl.DataFrame:
    """Add the proposed action, the override flag and the seconds a reviewer spent per case.

    Seconds per case = (file received - batch exported) / cases answered in that file: an
    upper bound on attention, since the batch may wait before anyone opens it. If even the
    upper bound is a couple of seconds, nobody can have read the cases.
    """
    reviewed = pl.col("verdict").is_not_null()
    return cases.with_columns(
        pl.when(pl.col("route") != "human_review")
        .then(None)
        .when(pl.col("risk_band").is_in(list(decline_bands)))
        .then(pl.lit(DECLINE))
        .otherwise(pl.lit(APPROVE))
        .alias("proposed_action"),
    ).with_columns(
        pl.when(reviewed)
        .then(pl.col("verdict") != pl.col("proposed_action"))
        .otherwise(None)
        .alias("override"),
        pl.when(reviewed)
        .then(
            seconds_between("exported_at", "verdict_received_at")
            / pl.len().over("verdict_file_sha256")
        )
        .otherwise(None)
        .alias("review_seconds_per_case"),
        seconds_between("exported_at", "verdict_received_at").alias("reviewer_response_s"),
        seconds_between("ingested_at", "executed_at").alias("time_to_decision_s"),
    )


def _long(frame: pl.DataFrame, metric: str, dimension: str, key: str | None, value: str):
    """Rows of the long metric table from a frame grouped by day (and `key`)."""
    return frame.select(
        "partition_date",
        pl.lit(metric).alias("metric"),
        pl.lit(dimension).alias("dimension"),
        (pl.col(key).cast(pl.String).fill_null("(none)") if key else pl.lit(ALL)).alias("key"),
        pl.col(value).cast(pl.Float64).alias("value"),
    )


def _counts(cases: pl.DataFrame, dimension: str, column: str | None) -> list[pl.DataFrame]:
    """Volume and share of cases per day, overall or per value of `column`."""
    keys = ["partition_date", *([column] if column else [])]
    grouped = cases.group_by(keys).len("n")
    if column is None:
        return [_long(grouped, "cases", ALL, None, "n")]
    shares = grouped.with_columns(
        (pl.col("n") / pl.col("n").sum().over("partition_date")).alias("s")
    )
    return [
        _long(shares, "cases", dimension, column, "n"),
        _long(shares, "rate", dimension, column, "s"),
    ]


def _distribution(
    cases: pl.DataFrame, value: str, prefix: str, dimension: str, key: str | None
) -> list[pl.DataFrame]:
    """p50, p95 and max of `value` per day (and `key`), in seconds."""
    keys = ["partition_date", *([key] if key else [])]
    present = cases.filter(pl.col(value).is_not_null())
    stats = present.group_by(keys).agg(
        pl.col(value).quantile(0.5, "nearest").alias("p50"),
        pl.col(value).quantile(0.95, "nearest").alias("p95"),
        pl.col(value).max().alias("max"),
    )
    return [_long(stats, f"{prefix}_{s}_s", dimension, key, s) for s in ("p50", "p95", "max")]


def _overrides(reviewed: pl.DataFrame, dimension: str, key: str | None) -> list[pl.DataFrame]:
    keys = ["partition_date", *([key] if key else [])]
    stats = reviewed.group_by(keys).agg(
        pl.len().alias("reviewed"),
        pl.col("override").sum().alias("overrides"),
        pl.col("override").mean().alias("override_rate"),
    )
    return [_long(stats, m, dimension, key, m) for m in ("reviewed", "overrides", "override_rate")]


def _stage_latencies(cases: pl.DataFrame) -> list[pl.DataFrame]:
    """Seconds from the latest earlier stage reached to each stage: where the time goes."""
    out = []
    for i, stage in enumerate(STAGES[1:], start=1):
        previous = pl.coalesce([pl.col(f"{s}_at") for s in reversed(STAGES[:i])])
        frame = cases.select(
            "partition_date",
            pl.lit(stage).alias("stage"),
            ((pl.col(f"{stage}_at") - previous).dt.total_milliseconds() / 1000.0).alias("latency"),
        )
        out += _distribution(frame, "latency", "stage_latency", "stage", "stage")
    return out


def _queues(cases: pl.DataFrame, as_of: datetime) -> list[pl.DataFrame]:
    """Queue depth, backlog age and SLA breaches of exported cases, as of `as_of`."""
    now = pl.lit(as_of, dtype=cases.schema["due_at"])
    exported = cases.filter(pl.col("exported_at").is_not_null()).with_columns(
        pl.col("verdict").is_null().alias("pending"),
        (pl.coalesce(pl.col("verdict_received_at"), now) > pl.col("due_at")).alias("breached"),
        (now - pl.col("exported_at")).dt.total_seconds().alias("age_s"),
    )
    keys = ["partition_date", "batch_queue"]
    per_queue = exported.group_by(keys).agg(
        pl.col("pending").sum().alias("queue_depth"),
        pl.col("breached").sum().alias("sla_breaches"),
        pl.col("breached").mean().alias("sla_breach_rate"),
        (pl.col("age_s").filter(pl.col("pending")).max() / 3600).alias("oldest_pending_age_h"),
    )
    total = exported.group_by("partition_date").agg(
        pl.col("pending").sum().alias("backlog"),
        pl.col("breached").sum().alias("sla_breaches"),
        (pl.col("age_s").filter(pl.col("pending")).max() / 3600).alias("oldest_pending_age_h"),
    )
    return [
        *(
            _long(per_queue, m, "queue", "batch_queue", m)
            for m in ("queue_depth", "sla_breaches", "sla_breach_rate", "oldest_pending_age_h")
        ),
        *(
            _long(total, m, ALL, None, m)
            for m in ("backlog", "sla_breaches", "oldest_pending_age_h")
        ),
    ]


def _outcomes(cases: pl.DataFrame, outcomes: pl.DataFrame | None) -> list[pl.DataFrame]:
    """Bad-outcome rate of decided cases whose outcome is known, by final action and route."""
    if outcomes is None or outcomes.height == 0:
        return []
    known = cases.join(outcomes.select("case_id", "bad"), on="case_id", how="inner")
    out = []
    for dimension, column in (("final_action", "executed_action"), ("route", "route")):
        stats = known.group_by("partition_date", column).agg(
            pl.len().alias("outcome_known"), pl.col("bad").mean().alias("bad_rate")
        )
        out += [
            _long(stats, "outcome_known", dimension, column, "outcome_known"),
            _long(stats, "bad_rate", dimension, column, "bad_rate"),
        ]
    return out


def qa_error_estimates(qa: pl.DataFrame | None) -> list[pl.DataFrame]:
    """Estimated error rate of automation per day, from QA-sampled cases with a verdict.

    `qa` has partition_date, proposed_route, qa_probability and verdict (null until
    reviewed). Rows: `qa_reviewed` (count), `qa_error_rate` and its Wilson bounds
    `qa_error_low` / `qa_error_high`, per automatic route and for all automatic routes.
    """
    from policies.qa import estimate_error_rate

    if qa is None or qa.height == 0:
        return []
    rows = []
    for (day,), part in qa.group_by("partition_date"):
        for est in estimate_error_rate(part):
            if est.reviewed == 0:
                continue
            key = "all" if est.stratum == "all automatic" else est.stratum
            for metric, value in (
                ("qa_reviewed", float(est.reviewed)),
                ("qa_error_rate", est.rate),
                ("qa_error_low", est.low),
                ("qa_error_high", est.high),
            ):
                rows.append((day, metric, "proposed_route", key, value))
    return [pl.DataFrame(rows, schema=METRIC_SCHEMA, orient="row")] if rows else []


def decision_metrics(
    cases: pl.DataFrame,
    *,
    as_of: datetime,
    decline_bands: Sequence[str],
    outcomes: pl.DataFrame | None = None,
    qa: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every metric of every day in `cases` (one row per case, `case_stage_times` columns).

    `outcomes` (case_id, bad) adds post-decision bad rates where the outcome is known; `qa`
    (QA-sampled automatic cases and their verdicts) adds the estimated error of automation.
    """
    if cases.height == 0:
        return pl.DataFrame(schema=METRIC_SCHEMA)
    facts = with_review_facts(cases, decline_bands)
    executed = facts.filter(pl.col("executed_action").is_not_null())
    reviewed = facts.filter(pl.col("override").is_not_null())
    parts = [
        *_counts(facts, ALL, None),
        *_counts(facts, "route", "route"),
        *_counts(facts.filter(pl.col("route") == "human_review"), "queue", "review_queue"),
        *_counts(facts, "risk_band", "risk_band"),
        *_counts(executed, "final_action", "executed_action"),
        *_overrides(reviewed, ALL, None),
        *_overrides(reviewed, "reviewer", "reviewer_id"),
        *_overrides(reviewed, "rule", "route_rule_id"),
        *_overrides(reviewed, "policy_version", "policy_version"),
        *_distribution(
            executed, "time_to_decision_s", "time_to_decision", "decided_by", "decided_by"
        ),
        *_distribution(
            reviewed, "reviewer_response_s", "reviewer_response", "reviewer", "reviewer_id"
        ),
        *_distribution(
            reviewed, "review_seconds_per_case", "review_time_per_case", "reviewer", "reviewer_id"
        ),
        *_stage_latencies(facts),
        *_queues(facts, as_of),
        *_outcomes(facts, outcomes),
        *qa_error_estimates(qa),
    ]
    return (
        pl.concat([p for p in parts if p.height], how="vertical_relaxed")
        .cast(METRIC_SCHEMA)
        .sort("partition_date", "metric", "dimension", "key")
    )


def metric_value(
    metrics: pl.DataFrame, metric: str, dimension: str = ALL, key: str = ALL
) -> float | None:
    """The sum over days of one metric (counts), or None when absent: for summaries and tests."""
    values = metrics.filter(
        (pl.col("metric") == metric) & (pl.col("dimension") == dimension) & (pl.col("key") == key)
    )["value"]
    return float(values.sum()) if values.len() else None

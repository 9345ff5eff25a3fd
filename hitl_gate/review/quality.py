"""Reviewer quality over a period: override rate, time per case, four-eyes agreement, gold.

A supervisor needs to know whether review is a real check: a reviewer who always follows the
model (override rate near 0) or never does, who answers in seconds, a four-eyes pair that
agrees no more than chance would, or who gets known cases wrong. Every figure is read from the
recorded opinions (`verdict_opinions`), one row per reviewer and case, received in the period.

- override rate: opinions whose verdict differs from the suggested action (`is_override`),
  out of opinions that had a suggestion (queues that hide it are not counted);
- time per case: from the moment the batch was assigned to the reviewer (the assignment row
  naming them, else the batch's creation) to the opinion's receipt; median and 90th percentile;
- agreement: Cohen's kappa per pair of four-eyes reviewers on the cases both decided
  (`review/kappa.py` says which interval and why);
- gold accuracy: opinions on gold cases (`review/gold.py`) that match the known answer.

Gold cases are scored only as gold: they are left out of the override rate, the time per case
and the agreement, which are about real work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame
from hitl_gate.review.kappa import Kappa, cohen_kappa

_REAL = (
    "NOT EXISTS (SELECT 1 FROM review_gold_cases g WHERE g.domain = o.domain "
    "AND g.case_id = o.case_id)"
)


@dataclass(frozen=True)
class Period:
    """The half-open period [start, end) of receipt times a report covers."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class PairAgreement:
    """Kappa of two reviewers over the four-eyes cases they both decided."""

    first: str
    second: str
    kappa: Kappa


@dataclass(frozen=True)
class QualityReport:
    """Per reviewer figures (`reviewers`) and per pair agreement of one domain and period."""

    domain: str
    period: Period
    reviewers: pl.DataFrame
    pairs: tuple[PairAgreement, ...]


# What each figure aggregates per reviewer (`_per_reviewer`), over which opinions `o`.
_OVERRIDE_COUNTS = (
    "count(*) AS opinions, "
    "count(*) FILTER (WHERE o.suggested_action IS NOT NULL) AS with_suggestion, "
    "count(*) FILTER (WHERE o.suggested_action IS NOT NULL AND o.is_override) AS overrides"
)
_HOURS = "median(o.hours) AS median_hours, quantile_cont(o.hours, 0.9) AS p90_hours"
# Each opinion with its hours from the assignment naming its reviewer (else the batch's
# creation) to its receipt.
_TIMED_OPINIONS = (
    "(SELECT o.*, epoch(o.received_at - coalesce(a.at, b.created_at)) / 3600.0 AS hours "
    "FROM verdict_opinions o LEFT JOIN review_all_batches b ON b.batch_id = o.batch_id "
    "LEFT JOIN (SELECT domain, batch_id, assignee_id, max(recorded_at) AS at "
    "FROM review_assignments GROUP BY ALL) a ON a.domain = o.domain "
    "AND a.batch_id = o.batch_id AND a.assignee_id = o.reviewer_id) o"
)
_GOLD_COUNTS = (
    "count(*) AS gold_answered, "
    "count(*) FILTER (WHERE o.verdict = g.expected_verdict) AS gold_correct"
)
_GOLD_OPINIONS = (
    "verdict_opinions o JOIN review_gold_cases g ON g.domain = o.domain AND g.case_id = o.case_id"
)


def override_rates(con: duckdb.DuckDBPyConnection, domain: str, period: Period) -> pl.DataFrame:
    """reviewer_id, opinions, with_suggestion, overrides, override_rate (None: no suggestion)."""
    rate = pl.when(pl.col("with_suggestion") > 0).then(
        pl.col("overrides") / pl.col("with_suggestion")
    )
    counts = _per_reviewer(con, domain, period, _OVERRIDE_COUNTS)
    return counts.with_columns(rate.alias("override_rate"))


def times_per_case(con: duckdb.DuckDBPyConnection, domain: str, period: Period) -> pl.DataFrame:
    """reviewer_id, median_hours, p90_hours: from assignment (or batch creation) to receipt."""
    where = f"{_REAL} AND o.hours IS NOT NULL"
    return _per_reviewer(con, domain, period, _HOURS, source=_TIMED_OPINIONS, where=where)


def gold_accuracy(con: duckdb.DuckDBPyConnection, domain: str, period: Period) -> pl.DataFrame:
    """reviewer_id, gold_answered, gold_correct, gold_accuracy."""
    counts = _per_reviewer(con, domain, period, _GOLD_COUNTS, source=_GOLD_OPINIONS, where="TRUE")
    return counts.with_columns(
        (pl.col("gold_correct") / pl.col("gold_answered")).alias("gold_accuracy")
    )


def _per_reviewer(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    period: Period,
    figures: str,
    *,
    source: str = "verdict_opinions o",
    where: str = _REAL,
) -> pl.DataFrame:
    """One row per reviewer: `figures` over the opinions `o` of `source` received in the
    period that meet `where` (by default: real work, not gold), so every figure reads the same
    period the same way. `figures`, `source` and `where` are this module's constants."""
    return query_frame(
        con,
        f"SELECT o.reviewer_id, {figures} FROM {source} WHERE o.domain = ? "
        f"AND o.received_at >= ? AND o.received_at < ? AND {where} "
        "GROUP BY o.reviewer_id ORDER BY o.reviewer_id",
        [domain, period.start, period.end],
    )


def pair_agreements(
    con: duckdb.DuckDBPyConnection, domain: str, period: Period
) -> tuple[PairAgreement, ...]:
    """Kappa per pair of four-eyes reviewers (names in sorted order, so a pair is one pair
    whichever of them held the first opinion); a case counts when its later opinion falls in
    the period."""
    rows = con.execute(
        "SELECT f.reviewer_id, f.verdict, s.reviewer_id, s.verdict FROM verdict_opinions f "
        "JOIN verdict_opinions s ON s.domain = f.domain AND s.case_id = f.case_id "
        "AND s.stage = 'second' WHERE f.domain = ? AND f.stage = 'first' "
        "AND greatest(f.received_at, s.received_at) >= ? "
        "AND greatest(f.received_at, s.received_at) < ? ORDER BY f.case_id",
        [domain, period.start, period.end],
    ).fetchall()
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for first, first_verdict, second, second_verdict in rows:
        if str(first) <= str(second):
            key, pair = (str(first), str(second)), (str(first_verdict), str(second_verdict))
        else:
            key, pair = (str(second), str(first)), (str(second_verdict), str(first_verdict))
        by_pair.setdefault(key, []).append(pair)
    return tuple(
        PairAgreement(a, b, cohen_kappa(pairs)) for (a, b), pairs in sorted(by_pair.items())
    )


def quality_report(con: duckdb.DuckDBPyConnection, domain: str, period: Period) -> QualityReport:
    """Every figure of the module for one domain and period, one row per reviewer."""
    if period.start.tzinfo is None or period.end.tzinfo is None:
        raise ValueError("a quality period needs timezone-aware start and end")
    if period.end <= period.start:
        raise ValueError(f"empty quality period: {period.start} to {period.end}")
    overrides = override_rates(con, domain, period)
    reviewers = (
        overrides.join(times_per_case(con, domain, period), on="reviewer_id", how="full",
                       coalesce=True)
        .join(gold_accuracy(con, domain, period), on="reviewer_id", how="full", coalesce=True)
        .sort("reviewer_id")
    )  # fmt: skip
    return QualityReport(domain, period, reviewers, pair_agreements(con, domain, period))

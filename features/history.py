"""Applicant-history features: what the same applicant's earlier cases looked like.

Declared per domain (`features.applicant_history`, `hitl_gate.core.domain.ApplicantHistoryConfig`);
a domain without a real applicant key declares nothing and has no history view.

Each case writes one row to the history source, keyed by the applicant and timestamped at the
case's decision time. The row's values summarise the applicant's other cases strictly before
that time and at most `window_days` earlier: count, summed amount, days since the latest. So
retrieving the history view point in time at the case's own decision time returns its own
row, computed only from the past; a case made at the same instant by the same applicant is
not "before" and is never counted (ties), and nothing after the decision time can be.

The row also carries the case's own id and amount (`source_case_id`, `source_amount`): that
is the ledger later days read their history from, so no other store is needed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import polars as pl

from features.config import SOURCES_DIR
from features.engineering import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FEATURE_DTYPE,
    TIMESTAMP_DTYPE,
    utc_timestamps,
)
from features.partition_files import write_partition
from hitl_gate.core.domain import ApplicantHistoryConfig, DomainConfig

SOURCE_CASE = "source_case_id"
SOURCE_AMOUNT = "source_amount"
_KEY = "__applicant"
_MICROS_PER_DAY = 86_400 * 1_000_000


def history_config(domain: DomainConfig) -> ApplicantHistoryConfig:
    """The domain's history declaration; a clear error when it has none."""
    history = domain.features.applicant_history
    if history is None:
        raise ValueError(f"domain {domain.name} declares no features.applicant_history")
    return history


def history_source_dir(domain: DomainConfig, feast_dir: Path) -> Path:
    """`feast_dir/sources/<history view>/`: one Parquet file per partition day."""
    return feast_dir.resolve() / SOURCES_DIR / history_config(domain).view


def history_frame_schema(domain: DomainConfig) -> dict[str, pl.DataType]:
    """The exact schema of a history partition file."""
    history = history_config(domain)
    return {
        history.key: pl.String(),
        EVENT_TIMESTAMP: TIMESTAMP_DTYPE,
        CREATED_TIMESTAMP: TIMESTAMP_DTYPE,
        SOURCE_CASE: pl.String(),
        SOURCE_AMOUNT: FEATURE_DTYPE(),
        **{name: FEATURE_DTYPE() for name in history.names},
    }


def ledger_inputs(domain: DomainConfig, day_column: str = "partition_date") -> list[str]:
    """The validated columns `write_history_partitions` reads (a narrow frame of the day)."""
    history = history_config(domain)
    return [domain.case_id, history.key, domain.event_time, history.amount, day_column]


def ledger(validated: pl.DataFrame, domain: DomainConfig) -> pl.DataFrame:
    """The columns history is computed from: case id, applicant key, decision time, amount."""
    history = history_config(domain)
    return validated.select(
        pl.col(domain.case_id).cast(pl.String).alias(SOURCE_CASE),
        pl.col(history.key).cast(pl.String).alias(history.key),
        utc_timestamps(pl.col(domain.event_time), validated.schema[domain.event_time]).alias(
            EVENT_TIMESTAMP
        ),
        pl.col(history.amount).cast(FEATURE_DTYPE).alias(SOURCE_AMOUNT),
    )


def earlier_ledger(
    domain: DomainConfig, feast_dir: Path, current: pl.DataFrame, exclude: list[Path]
) -> pl.DataFrame:
    """Ledger rows of stored partitions (except `exclude`) that can be history of `current`.

    Only the applicants present in `current` and times within the window before its latest
    case are read (predicate pushdown into the Parquet scan).
    """
    history = history_config(domain)
    files = sorted(set(history_source_dir(domain, feast_dir).glob("*.parquet")) - set(exclude))
    columns = [SOURCE_CASE, history.key, EVENT_TIMESTAMP, SOURCE_AMOUNT]
    if not files or current.height == 0:
        return current.select(columns).clear()
    keys = current[history.key].drop_nulls().unique().implode()
    latest = current[EVENT_TIMESTAMP].max()
    earliest = cast(datetime, current[EVENT_TIMESTAMP].min()) - timedelta(days=history.window_days)
    return (
        pl.scan_parquet(files)
        .select(columns)
        .filter(
            pl.col(history.key).is_in(keys),
            pl.col(EVENT_TIMESTAMP) >= earliest,
            pl.col(EVENT_TIMESTAMP) < latest,
        )
        .collect()
    )


def compute_history(
    current: pl.DataFrame,
    earlier: pl.DataFrame,
    domain: DomainConfig,
    *,
    created_at: datetime | None = None,
) -> pl.DataFrame:
    """One history row per row of `current` (a `ledger`), in order, from strictly earlier cases.

    Earlier cases are `earlier` plus the other rows of `current` (same-day history counts); a
    case id present in both is taken from `current` (a re-run day replaces its own rows).
    Prior case j counts for case i when the keys match and `t_i - window <= t_j < t_i`.
    """
    history = history_config(domain)
    count, amount, days = history.names
    window_us = history.window_days * _MICROS_PER_DAY
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    everything = pl.concat(
        [earlier.filter(~pl.col(SOURCE_CASE).is_in(current[SOURCE_CASE].implode())), current],
        how="vertical_relaxed",
    ).select(
        pl.col(history.key).alias(_KEY),
        pl.col(EVENT_TIMESTAMP).alias("__prior_ts"),
        pl.col(SOURCE_AMOUNT).alias("__prior_amount"),
    )
    cases = current.with_row_index("__row").with_columns(pl.col(history.key).alias(_KEY))
    micros = (pl.col(EVENT_TIMESTAMP) - pl.col("__prior_ts")).dt.total_microseconds()
    stats = (
        cases.select("__row", _KEY, EVENT_TIMESTAMP)
        .join(everything, on=_KEY, how="inner")
        .filter((micros > 0) & (micros <= window_us))
        .group_by("__row")
        .agg(
            pl.len().cast(FEATURE_DTYPE).alias(count),
            pl.col("__prior_amount").sum().cast(FEATURE_DTYPE).alias(amount),
            (micros.min() / _MICROS_PER_DAY).cast(FEATURE_DTYPE).alias(days),
        )
    )
    known = pl.col(history.key).is_not_null()
    out = cases.join(stats, on="__row", how="left").sort("__row")
    return out.select(
        history.key,
        EVENT_TIMESTAMP,
        pl.lit(created).cast(TIMESTAMP_DTYPE).alias(CREATED_TIMESTAMP),
        SOURCE_CASE,
        SOURCE_AMOUNT,
        pl.when(known).then(pl.col(count).fill_null(0.0)).alias(count),
        pl.when(known).then(pl.col(amount).fill_null(0.0)).alias(amount),
        pl.col(days),
    )


def write_history_partitions(
    validated: pl.DataFrame,
    domain: DomainConfig,
    feast_dir: Path,
    days: list[date],
    *,
    day_column: str = "partition_date",
    created_at: datetime | None = None,
) -> list[Path]:
    """Compute and write the history rows of `validated` (one file per day in `days`).

    History comes from the stored partitions of other days plus every case of this run, so
    a multi-day run gives each day the days before it. Re-running a day rewrites its file.
    Known limit: a late file for an earlier day does not update later days already written
    until they are re-run.
    """
    current = ledger(validated, domain).with_columns(validated[day_column].alias("__day"))
    folder = history_source_dir(domain, feast_dir)
    own_files = [folder / f"{day.isoformat()}.parquet" for day in days]
    earlier = earlier_ledger(domain, feast_dir, current.drop("__day"), own_files)
    rows = compute_history(current.drop("__day"), earlier, domain, created_at=created_at)
    rows = rows.with_columns(current["__day"])
    return [
        write_history_partition(rows.filter(pl.col("__day") == day), domain, feast_dir, day)
        for day in days
    ]


def write_history_partition(
    rows: pl.DataFrame, domain: DomainConfig, feast_dir: Path, day: date
) -> Path:
    """Replace one day's applicant-history file atomically (rows of `compute_history`)."""
    target = history_source_dir(domain, feast_dir) / f"{day.isoformat()}.parquet"
    return write_partition(rows, history_frame_schema(domain), target)

"""The demo's data preparation: the bundled LendingClub sample as a landing zone of daily files.

The sample only says which month a loan was issued in, so each application gets a day and a
time within its month from a seeded generator (the same every run, so the demo is repeatable
and idempotent). Post-origination columns (status, balance, payments) are not application data:
they are split off into an outcomes file, which is what training learns from, later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.domain import PROJECT_ROOT, DomainConfig

SAMPLE_FILE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
SEED = 2018


@dataclass(frozen=True)
class LandingSummary:
    """What the preparation wrote."""

    days: int
    applications: int
    files_written: int
    first_day: str
    last_day: str


def sample_applications(domain: DomainConfig, sample: Path = SAMPLE_FILE) -> pl.DataFrame:
    """The sample with a case id, an application time and the outcome column, contract-shaped."""
    raw = pl.read_parquet(sample)
    month_start = raw["issue_month"].str.to_date("%b-%Y")
    rng = np.random.default_rng(SEED)
    days_in_month = (month_start.dt.month_end().dt.day()).to_numpy()
    day_offset = np.floor(rng.random(raw.height) * days_in_month).astype(np.int64)
    seconds = rng.integers(8 * 3600, 20 * 3600, raw.height)
    times = [
        datetime(d.year, d.month, d.day) + timedelta(days=int(o), seconds=int(s))
        for d, o, s in zip(month_start.to_list(), day_offset, seconds, strict=True)
    ]
    contract_cols = [c for c in domain.contract.columns if c in raw.columns]
    return raw.select(
        pl.format("LC18Q1-{}", pl.col("rownames").cast(pl.String).str.zfill(5)).alias(
            domain.case_id
        ),
        pl.Series(domain.event_time, times, dtype=pl.Datetime("us")),
        *contract_cols,
        domain.model.label.column,
    )


def prepare_landing(
    domain: DomainConfig, landing: Path, sample: Path = SAMPLE_FILE
) -> LandingSummary:
    """Write one CSV per day under `<landing>/<subdir>/<day>/` and the outcomes file.

    A file whose bytes would not change is left alone, so a second run lands nothing new.
    """
    apps = sample_applications(domain, sample).sort(domain.event_time)
    apps = apps.with_columns(pl.col(domain.event_time).dt.date().alias("_day"))
    written = 0
    days = apps["_day"].unique().sort()
    for day in days:
        todays = apps.filter(pl.col("_day") == day).drop("_day", domain.model.label.column)
        target = landing / domain.landing_subdir / day.isoformat() / f"applications_{day}.csv"
        written += _write_if_changed(todays, target)
    outcomes = apps.select(domain.case_id, domain.model.label.column)
    written += _write_if_changed(
        outcomes, landing / domain.outcomes_subdir / "loan_status_2018q1.csv"
    )
    return LandingSummary(
        days=len(days),
        applications=apps.height,
        files_written=written,
        first_day=str(days[0]),
        last_day=str(days[-1]),
    )


def _write_if_changed(frame: pl.DataFrame, target: Path) -> int:
    """Write CSV bytes unless the file already holds exactly them; return 1 if written."""
    buffer = io.BytesIO()
    frame.write_csv(buffer, datetime_format="%Y-%m-%dT%H:%M:%S")
    data = buffer.getvalue()
    if target.exists() and target.read_bytes() == data:
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return 1

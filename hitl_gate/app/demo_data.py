"""The demo's data preparation: a domain's historical sample as a landing zone of daily files.

Generic over domains: the `sample:` section of the declaration says where the historical cases
are, how each gets its case id and decision time, and which columns are outcomes. Sources that
only know a period (a month) or no time at all get a day and a time from a seeded generator, so
the demo is repeatable and idempotent. Outcome columns are not application data: they are split
off into an outcomes file, which is what training learns from, later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.core.domain import DomainConfig, SampleConfig, SampleEventTime

_DAY_COLUMN = "_day"


class SampleError(ValueError):
    """A sample that cannot be landed: the message names the file and the column."""


@dataclass(frozen=True)
class LandingSummary:
    """What the preparation wrote."""

    days: int
    applications: int
    files_written: int
    first_day: str
    last_day: str


def require_sample(domain: DomainConfig) -> SampleConfig:
    """The domain's `sample:` section, or a clear error saying the demo needs one."""
    if domain.sample is None:
        raise SampleError(f"{domain.name}: the declaration has no 'sample:' section to land")
    return domain.sample


def read_source(path: Path) -> pl.DataFrame:
    """Read a sample file (Parquet, or CSV with types inferred from the whole file)."""
    if not path.is_file():
        raise SampleError(f"sample file not found: {path}")
    if path.suffix.lower() == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, infer_schema_length=None, try_parse_dates=True)


def sample_case_ids(raw: pl.DataFrame, sample: SampleConfig) -> pl.Expr:
    """`prefix` + the id column (or the 1-based row number), zero-padded to `width`."""
    spec = sample.case_id
    value = pl.col(spec.column) if spec.column else pl.int_range(1, raw.height + 1)
    text = value.cast(pl.String)
    if spec.width:
        text = text.str.zfill(spec.width)
    return pl.concat_str(pl.lit(spec.prefix), text)


def declared_column(spec: SampleEventTime, source: Path) -> str:
    """The sample's time column (the declaration's validator requires it for these periods)."""
    if spec.column is None:
        raise SampleError(f"{source}: period '{spec.period}' needs a column")
    return spec.column


def _period_starts(raw: pl.DataFrame, spec: SampleEventTime, source: Path) -> pl.Series:
    """Each row's period start as a date, from the declared column (text or temporal)."""
    column = raw.get_column(declared_column(spec, source))
    if column.dtype == pl.String:
        try:
            parsed = column.str.to_datetime(spec.format, strict=True) if spec.format else None
            column = parsed if parsed is not None else column.str.to_datetime(strict=True)
        except pl.exceptions.PolarsError as exc:
            raise SampleError(
                f"{source}: column '{spec.column}' does not parse with format {spec.format!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
    if not column.dtype.is_temporal():
        raise SampleError(f"{source}: column '{spec.column}' is {column.dtype}, not a date")
    if column.null_count():
        raise SampleError(f"{source}: column '{spec.column}' has {column.null_count()} nulls")
    return column.cast(pl.Date)


def sample_event_times(raw: pl.DataFrame, spec: SampleEventTime, source: Path) -> pl.Series:
    """Decision times: exact from a column, or seeded days and times within each row's period."""
    if spec.period == "exact":
        column = raw.get_column(declared_column(spec, source))
        if column.dtype == pl.String:
            column = column.str.to_datetime(spec.format, strict=True)
        return column.cast(pl.Datetime("us"))
    if spec.period == "range":
        if spec.start is None or spec.end is None:
            raise SampleError(f"{source}: period 'range' needs start and end")
        first = spec.start
        starts = pl.Series([first] * raw.height, dtype=pl.Date)
        window = np.full(raw.height, (spec.end - first).days + 1)
    else:
        starts = _period_starts(raw, spec, source)
        if spec.period == "month":
            starts = starts.dt.month_start()
            window = starts.dt.month_end().dt.day().to_numpy()
        else:
            window = np.ones(raw.height, dtype=np.int64)
    rng = np.random.default_rng(spec.seed)
    day_offset = np.floor(rng.random(raw.height) * window).astype(np.int64)
    seconds = rng.integers(spec.hours[0] * 3600, spec.hours[1] * 3600, raw.height)
    times = [
        datetime(d.year, d.month, d.day) + timedelta(days=int(o), seconds=int(s))
        for d, o, s in zip(starts.to_list(), day_offset, seconds, strict=True)
    ]
    return pl.Series(times, dtype=pl.Datetime("us"))


def sample_applications(domain: DomainConfig) -> pl.DataFrame:
    """The sample with a case id, a decision time, the contract columns and the outcomes."""
    sample = require_sample(domain)
    source = domain.resolve(sample.source)
    raw = read_source(source)
    generated = {domain.case_id, domain.event_time}
    contract_cols = [c for c in domain.contract.columns if c not in generated]
    outcomes = list(dict.fromkeys([domain.model.label.column, *sample.outcome_columns]))
    missing = [c for c in [*contract_cols, *outcomes] if c not in raw.columns]
    needed = [c for c in (sample.case_id.column, sample.event_time.column) if c]
    missing += [c for c in needed if c not in raw.columns]
    if missing:
        raise SampleError(f"{source}: columns declared by {domain.name} are missing: {missing}")
    return raw.select(
        sample_case_ids(raw, sample).alias(domain.case_id),
        sample_event_times(raw, sample.event_time, source).alias(domain.event_time),
        *contract_cols,
        *outcomes,
    )


def prepare_landing(domain: DomainConfig, landing: Path) -> LandingSummary:
    """Write one CSV per day under `<landing>/<subdir>/<day>/` and the outcomes file.

    A file whose bytes would not change is left alone, so a second run lands nothing new.
    """
    sample = require_sample(domain)
    apps = sample_applications(domain).sort(domain.event_time, domain.case_id)
    apps = apps.with_columns(pl.col(domain.event_time).dt.date().alias(_DAY_COLUMN))
    outcome_cols = list(dict.fromkeys([domain.model.label.column, *sample.outcome_columns]))
    stem = Path(domain.landing_subdir).name
    written = 0
    days: list[date] = apps[_DAY_COLUMN].unique().sort().to_list()
    for day in days:
        todays = apps.filter(pl.col(_DAY_COLUMN) == day).drop(_DAY_COLUMN, *outcome_cols)
        target = landing / domain.landing_subdir / day.isoformat() / f"{stem}_{day}.csv"
        written += write_if_changed(todays, target)
    outcomes = apps.select(domain.case_id, *outcome_cols)
    written += write_if_changed(outcomes, landing / domain.outcomes_subdir / sample.outcomes_file)
    return LandingSummary(
        days=len(days),
        applications=apps.height,
        files_written=written,
        first_day=str(days[0]),
        last_day=str(days[-1]),
    )


def write_if_changed(frame: pl.DataFrame, target: Path) -> int:
    """Write CSV bytes unless the file already holds exactly them; return 1 if written."""
    buffer = io.BytesIO()
    frame.write_csv(buffer, datetime_format="%Y-%m-%dT%H:%M:%S")
    data = buffer.getvalue()
    if target.exists() and target.read_bytes() == data:
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return 1

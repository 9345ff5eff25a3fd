"""Synthetic loan applications calibrated on the bundled LendingClub sample, at any size.

Rows are whole-row bootstrap draws from the real sample (so the joint distribution, the
correlations between columns and the pattern of nulls are kept), then perturbed: continuous
amounts by a multiplicative log-normal jitter shared within a row (so loan amount and
instalment stay consistent), counts by a rare +-1, each clipped to the contract's bounds.
Nulls stay null, so null rates match the sample's. Everything is vectorised numpy/Polars and
seeded, so the same arguments always give the same bytes; a million rows take seconds.

`python -m bench.generate --rows 1000000 --day 2018-04-02 --landing /tmp/landing`
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.core.domain import ColumnContract, DomainConfig, load_domain

# Relative spread of the multiplicative jitter on amounts, and how often a count moves by one.
AMOUNT_SIGMA = 0.05
COUNT_STEP_RATE = 0.1
# A partition's rows are written in files of at most this many rows (bounded writer memory).
DEFAULT_ROWS_PER_FILE = 1_000_000
# Columns that are identities or codes, never perturbed.
_FIXED = {"earliest_credit_line"}


@dataclass(frozen=True)
class GeneratedDay:
    """What one call wrote: the application files and the outcomes file of a partition day."""

    day: date
    rows: int
    application_files: list[Path]
    outcomes_file: Path


def calibration_frame(domain: DomainConfig, sample: Path | None = None) -> pl.DataFrame:
    """The sample's contract columns (minus id and time) and the outcome label, typed.

    Defaults to the domain's declared sample (`sample.source` in its domain.yaml).
    """
    if sample is None:
        if domain.sample is None:
            raise ValueError(f"{domain.name} declares no sample to calibrate on")
        sample = domain.resolve(domain.sample.source)
    raw = pl.read_parquet(sample)
    keep = [c for c in domain.contract.columns if c in raw.columns and c not in _identity(domain)]
    return raw.select(*keep, domain.model.label.column)


def _identity(domain: DomainConfig) -> set[str]:
    return {domain.case_id, domain.event_time}


def _jitter_amounts(
    frame: pl.DataFrame, columns: list[str], contract: dict[str, ColumnContract], factor: np.ndarray
) -> list[pl.Series]:
    """Floats scaled by the row's factor, rounded as in the sample, clipped to the contract."""
    out = []
    for name in columns:
        spec = contract[name]
        series = frame[name].cast(pl.Float64)
        values = series.to_numpy() * factor
        decimals = 0 if frame.schema[name].is_integer() else 2
        values = np.round(values, decimals)
        values = np.clip(values, _bound(spec.min, -math.inf), _bound(spec.max, math.inf))
        jittered = pl.Series(name, values).set(series.is_null(), None)
        out.append(jittered.cast(frame.schema[name]))
    return out


def _jitter_counts(
    frame: pl.DataFrame, columns: list[str], contract: dict[str, ColumnContract], rng
) -> list[pl.Series]:
    """Interior counts moved by +-1 with a small probability; counts at a bound are kept."""
    out = []
    for name in columns:
        spec = contract[name]
        series = frame[name]
        step = rng.choice(
            [-1, 0, 1],
            size=frame.height,
            p=[COUNT_STEP_RATE / 2, 1 - COUNT_STEP_RATE, COUNT_STEP_RATE / 2],
        )
        low, high = _bound(spec.min, 0), _bound(spec.max, math.inf)
        values = series.fill_null(0).to_numpy().astype(np.float64)
        # Values at a bound stay put, so clipping cannot shift the mean (most counts are 0).
        values = np.where((values > low) & (values < high), values + step, values)
        moved = pl.Series(name, values).set(series.is_null(), None)
        out.append(moved.cast(series.dtype))
    return out


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def synthesise(
    domain: DomainConfig,
    rows: int,
    day: date,
    *,
    seed: int = 0,
    calibration: pl.DataFrame | None = None,
    id_offset: int = 0,
    applicants: int | None = None,
) -> pl.DataFrame:
    """`rows` contract-shaped applications on `day`, plus the outcome column, seeded.

    Case ids are `SYN<yyyymmdd>-<n>` (unique per day and offset), application times uniform
    between 08:00 and 20:00 of `day`, ordered by time as a landing file would be. A domain
    that declares `features.applicant_history` also gets its key column: ids `APL<n>` drawn
    from a pool of `applicants` (default 3x rows), so some applicants return, within the
    day and on later days.
    """
    base = calibration if calibration is not None else calibration_frame(domain)
    rng = np.random.default_rng([seed, day.toordinal(), id_offset])
    drawn = base[rng.integers(0, base.height, rows)]
    contract = domain.contract.columns
    numeric = [c for c in drawn.columns if c in contract and contract[c].type in ("int", "float")]
    free = [c for c in numeric if contract[c].allowed is None and c not in _FIXED]
    amounts = [c for c in free if contract[c].type == "float" or c.startswith("total_")]
    counts = [c for c in free if c not in amounts]
    factor = np.exp(rng.normal(0.0, AMOUNT_SIGMA, rows))
    jittered = drawn.with_columns(
        *_jitter_amounts(drawn, amounts, contract, factor),
        *_jitter_counts(drawn, counts, contract, rng),
    )
    drawn = _keep_rules(domain, drawn, jittered)
    start = datetime(day.year, day.month, day.day)
    seconds = np.sort(rng.integers(8 * 3600, 20 * 3600, rows))
    ids = pl.int_range(id_offset, id_offset + rows, eager=True).cast(pl.String).str.zfill(9)
    out = drawn.select(
        (f"SYN{day:%Y%m%d}-" + ids).alias(domain.case_id),
        (pl.lit(start) + pl.duration(seconds=pl.Series(seconds))).alias(domain.event_time),
        *drawn.columns,
    )
    history = domain.features.applicant_history
    if history is None:
        return out
    pool = applicants or max(3 * rows, 1)
    applicant = pl.Series(rng.integers(0, pool, rows)).cast(pl.String).str.zfill(9)
    return out.with_columns(("APL" + applicant).alias(history.key))


def _keep_rules(domain: DomainConfig, real: pl.DataFrame, jittered: pl.DataFrame) -> pl.DataFrame:
    """Jittered rows, except where jitter broke a cross-field rule: those keep the real values.

    Rows are drawn from the real sample, which satisfies the contract's rules; independent
    jitter of related amounts (loan vs income) could break them, and the benchmark measures
    valid traffic unless it injects bad rows on purpose.
    """
    if not domain.contract.rules:
        return jittered
    valid = pl.all_horizontal(
        [pl.sql_expr(rule.expr).fill_null(True) for rule in domain.contract.rules]
    )
    mask = jittered.select(valid.alias("ok"))["ok"]
    return jittered.select(
        pl.when(mask).then(jittered[c]).otherwise(real[c]).alias(c) for c in jittered.columns
    )


def write_day(
    domain: DomainConfig,
    landing: Path,
    rows: int,
    day: date,
    *,
    seed: int = 0,
    file_format: str = "csv",
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> GeneratedDay:
    """Write `rows` applications for `day` into the landing zone, chunked into files.

    Applications go to `<landing>/<subdir>/<day>/synthetic_<day>_<k>.<fmt>` and their
    outcomes to `<landing>/<outcomes>/synthetic_<day>.csv`, the layout `hitl demo` uses.
    Chunks are generated and written one at a time, so 10M rows never sit in memory at once.
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file format must be csv or parquet, not {file_format!r}")
    calibration = calibration_frame(domain)
    folder = landing / domain.landing_subdir / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    outcomes_dir = landing / domain.outcomes_subdir
    outcomes_dir.mkdir(parents=True, exist_ok=True)
    label = domain.model.label.column
    files, outcomes = [], []
    for k, start in enumerate(range(0, rows, rows_per_file)):
        n = min(rows_per_file, rows - start)
        chunk = synthesise(domain, n, day, seed=seed, calibration=calibration, id_offset=start)
        target = folder / f"synthetic_{day}_{k:03d}.{file_format}"
        apps = chunk.drop(label)
        if file_format == "csv":
            apps.write_csv(target, datetime_format="%Y-%m-%dT%H:%M:%S")
        else:
            apps.write_parquet(target)
        files.append(target)
        outcomes.append(chunk.select(domain.case_id, label))
    outcomes_file = outcomes_dir / f"synthetic_{day}.csv"
    pl.concat(outcomes).write_csv(outcomes_file)
    return GeneratedDay(day=day, rows=rows, application_files=files, outcomes_file=outcomes_file)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2018, 4, 2))
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--domain", default="consumer_credit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE)
    args = parser.parse_args(argv)
    written = write_day(
        load_domain(args.domain),
        args.landing,
        args.rows,
        args.day,
        seed=args.seed,
        file_format=args.format,
        rows_per_file=args.rows_per_file,
    )
    files = len(written.application_files)
    sys.stdout.write(f"{written.rows} applications for {written.day} in {files} files\n")


if __name__ == "__main__":
    main()

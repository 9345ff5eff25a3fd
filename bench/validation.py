"""Validation throughput at 1M rows: the pandera contract stage and the expectation suites.

    python -m bench.validation [--rows 1000000] [--repeats 3] [--with-gx-pandas]

Rows are the bundled sample's 10,000 applications repeated with unique case ids. Measured in
the same run, medians of `--repeats`:
- contract stage (the baseline): `validate_frame` (parse + pandera + duplicate ids + rules) on
  typed input (what Parquet gives), on an all-text frame, and `ingest_files` on a CSV file
  (read + type + validate + quarantine, what a CSV landing file costs);
- expectation suite: the domain's `validated_cases` suite through Great Expectations' SQL
  engine on DuckDB over the rows stored as a one-day Parquet partition, exactly what the asset
  check runs (views, trailing row counts, GE validation, GE Data Docs); target: within 2x of
  the pandera stage;
- with `--with-gx-pandas`: the same suite on GE's pandas engine, for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.app.demo_data import sample_applications
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest.landing import fingerprint, ingest_files
from hitl_gate.quality.contract import validate_frame
from hitl_gate.quality.expectations import TRAILING, Suite, load_expectations
from hitl_gate.quality.gx_suites import GxLocations, run_suite

DAY = date(2018, 6, 30)


def _say(line: str) -> None:
    """Report a line on stdout (a benchmark's output is its result)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds (all threads of this process) over `repeats` runs.

    CPU seconds are the steadier figure on a shared machine: they do not grow when other
    processes take the cores, wall time does.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _rows(n: int) -> pl.DataFrame:
    domain = load_domain("consumer_credit")
    base = sample_applications(domain).select(list(domain.contract.columns))
    copies = -(-n // base.height)
    frame = pl.concat([base] * copies).head(n)
    return frame.with_columns(
        pl.format("B-{}", pl.int_range(pl.len())).alias(domain.case_id),
        pl.col("term").cast(pl.Int64),
    )


def _gx_duckdb_runner(
    domain: DomainConfig, suite: Suite, valid: pl.DataFrame, home: Path
) -> Callable[[], object]:
    """The asset check's work: GE on DuckDB over the rows stored as one day's Parquet."""
    where = GxLocations(home, home / "data_docs", home / "warehouse")
    folder = where.warehouse / domain.name / "validated_cases"
    folder.mkdir(parents=True)
    valid.with_columns(partition_date=pl.lit(DAY)).write_parquet(folder / f"{DAY}.parquet")
    runs = iter(range(1_000))

    def run() -> object:
        outcome = run_suite(
            where, domain.name, "validated_cases", suite, [DAY], f"bench-{next(runs)}"
        )
        if not outcome.outcomes or not outcome.pages:
            raise RuntimeError("the suite produced no results or Data Docs")
        return outcome

    return run


def _gx_runner(suite: Suite, frame: pl.DataFrame) -> Callable[[], object]:
    """The same suite through Great Expectations' pandas engine (column-pruned conversion)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    names = {
        "expect_column_values_to_not_be_null": gxe.ExpectColumnValuesToNotBeNull,
        "expect_column_values_to_be_between": gxe.ExpectColumnValuesToBeBetween,
        "expect_column_values_to_be_in_set": gxe.ExpectColumnValuesToBeInSet,
        "expect_column_mean_to_be_between": gxe.ExpectColumnMeanToBeBetween,
        "expect_table_row_count_to_be_between": gxe.ExpectTableRowCountToBeBetween,
    }
    expectations = []
    for e in suite.expectations:
        if e.expectation == TRAILING:
            continue
        kwargs = e.model_dump(include={"column", "min_value", "max_value", "value_set"})
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if e.expectation.startswith("expect_column_values"):
            kwargs["mostly"] = e.mostly
        expectations.append(names[e.expectation](**kwargs))
    context = gx.get_context(mode="ephemeral")
    batch_def = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("cases")
        .add_batch_definition_whole_dataframe("all")
    )
    gx_suite = context.suites.add(gx.ExpectationSuite(name="bench", expectations=expectations))
    columns = sorted({e.column for e in suite.expectations if e.column})

    def run() -> object:
        batch = batch_def.get_batch(
            batch_parameters={"dataframe": frame.select(columns).to_pandas()}
        )
        return batch.validate(gx_suite, result_format="BOOLEAN_ONLY")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-gx-pandas", action="store_true")
    args = parser.parse_args()

    domain = load_domain("consumer_credit")
    typed = _rows(args.rows)
    text = typed.select(pl.all().cast(pl.String))
    suite = load_expectations(domain.source_dir / (domain.expectations or "")).suites[
        "validated_cases"
    ]
    validate_frame(typed.head(1000), domain.contract, domain.case_id)  # pandera import, warm-up
    valid, failures = validate_frame(typed, domain.contract, domain.case_id)
    with tempfile.TemporaryDirectory(prefix="bench_validation_") as tmp:
        csv_file = Path(tmp) / "landing" / f"{DAY}" / "applications.csv"
        csv_file.parent.mkdir(parents=True)
        typed.write_csv(csv_file)
        landing = fingerprint(csv_file, DAY)

        def ingest_csv() -> None:
            result = ingest_files([landing], domain.contract, domain.case_id)
            if int(result.files["rows_read"].sum()) != args.rows:
                raise RuntimeError("CSV ingest did not read every row")

        start = time.perf_counter()
        gx_duckdb = _gx_duckdb_runner(domain, suite, valid, Path(tmp) / "home")
        gx_duckdb()
        _say(f"great_expectations import, set-up, first run: {time.perf_counter() - start:.1f} s")
        results = {
            "contract stage (pandera), typed input": _median_seconds(
                lambda: validate_frame(typed, domain.contract, domain.case_id), args.repeats
            ),
            "contract stage (pandera), all-text frame": _median_seconds(
                lambda: validate_frame(text, domain.contract, domain.case_id), args.repeats
            ),
            "contract stage (pandera), CSV file: read + type + validate": _median_seconds(
                ingest_csv, args.repeats
            ),
            "expectation suite, GE 1.24 SQL engine on DuckDB (+ Data Docs)": _median_seconds(
                gx_duckdb, args.repeats
            ),
        }
    if args.with_gx_pandas:
        gx_run = _gx_runner(suite, valid)
        results["expectation suite, GE 1.24 pandas engine"] = _median_seconds(gx_run, args.repeats)
    base = results["contract stage (pandera), typed input"][0]
    csv = results["contract stage (pandera), CSV file: read + type + validate"][0]
    _say(f"{args.rows:,} rows, {len(domain.contract.columns)} columns, "
          f"{len(domain.contract.rules)} rules, {len(suite.expectations)} expectations, "
          f"{failures.height} failures, median of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    _say("| stage | median wall s | rows/s | median CPU s | ratio to pandera (typed) "
         "| ratio to pandera (CSV) |")  # fmt: skip
    _say("|---|---|---|---|---|---|")
    for name, (seconds, cpu) in results.items():
        _say(
            f"| {name} | {seconds:.3f} | {args.rows / seconds:,.0f} | {cpu:.2f} "
            f"| {seconds / base:.2f} | {seconds / csv:.2f} |"
        )


if __name__ == "__main__":
    main()

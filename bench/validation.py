"""Validation throughput at 1M rows: the pandera contract stage and the expectation suites.

    python -m bench.validation [--rows 1000000] [--repeats 3] [--with-gx]

Rows are the bundled sample's 10,000 applications repeated with unique case ids, in the typed
form a Parquet file gives and as CSV text. Measured in the same run, medians of `--repeats`:
- contract stage: `validate_frame` (parse + pandera + duplicate ids + cross-field rules);
- expectation suites: the domain's `validated_cases` suite as one DuckDB query (what the asset
  check runs); the baseline is the pandera stage on the same rows (target: within 2x);
- with `--with-gx`: the same suite through Great Expectations' pandas engine (import excluded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import duckdb
import polars as pl

from hitl_gate.contract import validate_frame
from hitl_gate.demo import sample_applications
from hitl_gate.domain import load_domain
from hitl_gate.expectations import Suite, load_expectations, run_suite


def _say(line: str) -> None:
    """Report a line on stdout (a benchmark's output is its result)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rows(n: int) -> pl.DataFrame:
    domain = load_domain("consumer_credit")
    base = sample_applications(domain).select(list(domain.contract.columns))
    copies = -(-n // base.height)
    frame = pl.concat([base] * copies).head(n)
    return frame.with_columns(
        pl.format("B-{}", pl.int_range(pl.len())).alias(domain.case_id),
        pl.col("term").cast(pl.Int64),
    )


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
        if e.expectation not in names:
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
    parser.add_argument("--with-gx", action="store_true")
    args = parser.parse_args()

    domain = load_domain("consumer_credit")
    typed = _rows(args.rows)
    text = typed.select(pl.all().cast(pl.String))
    suite = load_expectations(domain.source_dir / (domain.expectations or "")).suites[
        "validated_cases"
    ]
    validate_frame(typed.head(1000), domain.contract, domain.case_id)  # pandera import, warm-up
    valid, failures = validate_frame(typed, domain.contract, domain.case_id)
    valid = valid.with_columns(partition_date=pl.col(domain.event_time).dt.date())
    con = duckdb.connect()
    results = {
        "contract stage (pandera), typed input": _median_seconds(
            lambda: validate_frame(typed, domain.contract, domain.case_id), args.repeats
        ),
        "contract stage (pandera), CSV text input": _median_seconds(
            lambda: validate_frame(text, domain.contract, domain.case_id), args.repeats
        ),
        "expectation suite, SQL in DuckDB": _median_seconds(
            lambda: run_suite(con, valid, suite, {}), args.repeats
        ),
    }
    if args.with_gx:
        start = time.perf_counter()
        gx_run = _gx_runner(suite, valid)
        _say(f"great_expectations import and set-up: {time.perf_counter() - start:.1f} s")
        results["expectation suite, GE 1.24 pandas engine"] = _median_seconds(gx_run, args.repeats)
    base = results["contract stage (pandera), typed input"]
    _say(f"{args.rows:,} rows, {len(domain.contract.columns)} columns, "
          f"{len(domain.contract.rules)} rules, {len(suite.expectations)} expectations, "
          f"{failures.height} failures, median of {args.repeats}")  # fmt: skip
    _say("| stage | median s | rows/s | ratio to pandera stage (typed) |")
    _say("|---|---|---|---|")
    for name, seconds in results.items():
        _say(f"| {name} | {seconds:.3f} | {args.rows / seconds:,.0f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()

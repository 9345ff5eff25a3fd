"""Expectation suites executed as SQL in DuckDB, with Great Expectations' semantics."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.domain import load_domain
from hitl_gate.expectations import (
    Expectation,
    Suite,
    load_expectations,
    run_suite,
    write_data_docs,
)

DAY = date(2018, 1, 10)
FRAME = pl.DataFrame(
    {
        "amount": [1.0, 2.0, 3.0, None, 50.0],
        "grade": ["A", "B", "Z", "A", None],
        "term": [36, 60, 36, 36, 60],
        "partition_date": [DAY] * 5,
    }
)


def _run(*expectations: dict, history: dict[date, int] | None = None) -> list:
    suite = Suite(expectations=[Expectation.model_validate(e) for e in expectations])
    con = duckdb.connect()
    try:
        return run_suite(con, FRAME, suite, history)
    finally:
        con.close()


def test_value_expectations_ignore_nulls_and_honour_mostly() -> None:
    between, in_set, in_set_mostly, not_null, not_null_mostly, ints = _run(
        {"expectation": "expect_column_values_to_be_between", "column": "amount", "max_value": 10},
        {"expectation": "expect_column_values_to_be_in_set", "column": "grade",
         "value_set": ["A", "B"]},
        {"expectation": "expect_column_values_to_be_in_set", "column": "grade",
         "value_set": ["A", "B"], "mostly": 0.75},
        {"expectation": "expect_column_values_to_not_be_null", "column": "amount"},
        {"expectation": "expect_column_values_to_not_be_null", "column": "amount", "mostly": 0.8},
        {"expectation": "expect_column_values_to_be_in_set", "column": "term",
         "value_set": [36, 60]},
    )  # fmt: skip
    assert (between.success, between.unexpected, between.observed) == (
        False,
        1,
        "1 of 4 unexpected",
    )
    assert (in_set.success, in_set.unexpected, in_set.unexpected_percent) == (False, 1, 25.0)
    assert in_set_mostly.success
    assert (not_null.success, not_null.unexpected) == (False, 1)
    assert not_null_mostly.success and ints.success


def test_table_expectations() -> None:
    count, mean, low_mean = _run(
        {"expectation": "expect_table_row_count_to_be_between", "min_value": 1, "max_value": 5},
        {"expectation": "expect_column_mean_to_be_between", "column": "amount", "max_value": 20},
        {"expectation": "expect_column_mean_to_be_between", "column": "amount", "max_value": 10},
    )
    assert count.success and count.observed == "5 rows"
    assert mean.success and not low_mean.success


def test_row_count_against_the_trailing_days() -> None:
    spec = {
        "expectation": "expect_table_row_count_within_trailing_range",
        "days": 3,
        "min_ratio": 0.5,
        "max_ratio": 2,
    }
    (no_history,) = _run(spec)
    (usual,) = _run(spec, history={date(2018, 1, 9): 4, date(2018, 1, 8): 6, date(2018, 1, 1): 1})
    (dropped,) = _run(spec, history={date(2018, 1, 9): 20, date(2018, 1, 8): 30})
    assert no_history.success and "no history" in no_history.observed
    assert usual.success and "median 5" in usual.observed
    assert not dropped.success and "OUT OF RANGE" in dropped.observed


def test_unknown_columns_and_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        _run({"expectation": "expect_column_values_to_not_be_null", "column": "nope"})
    with pytest.raises(ValueError, match="value_set"):
        Expectation(expectation="expect_column_values_to_be_in_set", column="grade")
    with pytest.raises(ValueError, match="column"):
        Expectation(expectation="expect_table_row_count_to_be_between", column="grade")


def test_the_shipped_suites_load_and_data_docs_are_written(tmp_path: Path) -> None:
    domain = load_domain("consumer_credit")
    assert domain.expectations is not None
    config = load_expectations(domain.source_dir / domain.expectations)
    assert set(config.suites) == {"validated_cases", "case_features"}
    assert config.suites["case_features"].blocking
    outcomes = _run({"expectation": "expect_column_values_to_not_be_null", "column": "amount"})
    page = write_data_docs(tmp_path, "d", "validated_cases", [DAY], outcomes)
    assert page.name == "d__validated_cases__2018-01-10_2018-01-10.html"
    assert "FAILED" in page.read_text() and page.name in (tmp_path / "index.html").read_text()

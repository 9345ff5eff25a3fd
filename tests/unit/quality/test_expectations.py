"""Expectation suites run by Great Expectations' SQL engine on DuckDB, with GE Data Docs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import load_domain
from hitl_gate.quality.expectations import Expectation, Outcome, Suite, load_expectations
from hitl_gate.quality.gx_suites import GxLocations, run_suite
from tests.fork_server import FORK_SERVER_GROUP, shared_forkserver

pytestmark = pytest.mark.slow  # Great Expectations runs: `make test` runs them, test-fast not

DAY = date(2018, 1, 10)
FRAME = pl.DataFrame(
    {
        "amount": [1.0, 2.0, 3.0, None, 50.0],
        "grade": ["A", "B", "Z", "A", None],
        "term": [36, 60, 36, 36, 60],
    }
)
SPECS = [
    {"expectation": "expect_column_values_to_be_between", "column": "amount", "max_value": 10},
    {"expectation": "expect_column_values_to_be_in_set", "column": "grade",
     "value_set": ["A", "B"]},
    {"expectation": "expect_column_values_to_be_in_set", "column": "grade",
     "value_set": ["A", "B"], "mostly": 0.75},
    {"expectation": "expect_column_values_to_not_be_null", "column": "amount"},
    {"expectation": "expect_column_values_to_not_be_null", "column": "amount", "mostly": 0.8},
    {"expectation": "expect_column_values_to_be_in_set", "column": "term", "value_set": [36, 60]},
    {"expectation": "expect_table_row_count_to_be_between", "min_value": 1, "max_value": 5},
    {"expectation": "expect_column_mean_to_be_between", "column": "amount", "max_value": 20},
    {"expectation": "expect_column_mean_to_be_between", "column": "amount", "max_value": 10},
    {"expectation": "expect_table_row_count_within_trailing_range", "days": 3,
     "min_ratio": 0.5, "max_ratio": 2},
]  # fmt: skip


def _store(warehouse: Path, day: date, rows: int) -> None:
    """A stage partition as the IO manager writes it: `<domain>/<stage>/<day>.parquet`."""
    folder = warehouse / "d" / "validated_cases"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.concat([FRAME] * (rows // FRAME.height + 1)).head(rows)
    frame.with_columns(partition_date=pl.lit(day)).write_parquet(folder / f"{day}.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[GxLocations, list, list]:
    """Two runs of one suite: a usual day (5 rows vs 4 and 6 before), then a day that jumps."""
    home = tmp_path_factory.mktemp("gx_home")
    where = GxLocations(home, home / "data_docs", home / "warehouse")
    for offset, rows in ((1, 4), (2, 6), (9, 1)):
        _store(where.warehouse, DAY - timedelta(days=offset), rows)
    _store(where.warehouse, DAY, 5)
    suite = Suite(expectations=[Expectation.model_validate(s) for s in SPECS])
    usual = run_suite(where, "d", "validated_cases", suite, [DAY], "run-1")
    _store(where.warehouse, DAY + timedelta(days=1), 40)
    jump = run_suite(where, "d", "validated_cases", suite, [DAY + timedelta(days=1)], "run-2")
    return where, usual, jump


def test_value_expectations_ignore_nulls_and_honour_mostly(runs: tuple) -> None:
    _, usual, _ = runs
    between, in_set, in_set_mostly, not_null, not_null_mostly, ints = usual.outcomes[:6]
    assert (between.success, between.unexpected, between.observed) == (
        False,
        1,
        "1 of 4 values unexpected",
    )
    assert (in_set.success, in_set.unexpected, in_set.unexpected_percent) == (False, 1, 25.0)
    assert in_set_mostly.success
    assert (not_null.success, not_null.unexpected) == (False, 1)
    assert not_null_mostly.success and ints.success
    assert not usual.success


def test_table_expectations_see_only_the_checked_days(runs: tuple) -> None:
    _, usual, _ = runs
    count, mean, low_mean = usual.outcomes[6:9]
    assert count.success and count.observed == "5 rows"  # other days' files are not counted
    assert mean.success and not low_mean.success


def test_row_count_against_the_trailing_days(runs: tuple) -> None:
    _, usual, jump = runs
    assert usual.outcomes[9].success  # 5 rows vs median 5 of the 3 days before
    trailing = jump.outcomes[9]
    assert not trailing.success and trailing.observed == "1 of 1 days unexpected"
    assert [o.label for o in jump.outcomes] == [Expectation.model_validate(s).label for s in SPECS]


def test_great_expectations_data_docs_are_built_in_the_home(runs: tuple) -> None:
    where, usual, jump = runs
    assert where.data_docs == usual.index.parent and usual.index.is_file()
    assert len(usual.pages) == 2 and all(p.is_file() for p in usual.pages + jump.pages)
    page = usual.pages[0].read_text(encoding="utf-8")
    assert "expect_column_values_to_be_in_set" in page or "values must belong" in page
    assert "run-2" in jump.pages[0].as_posix() and usual.pages[0].is_relative_to(where.data_docs)
    assert (where.project_root / "gx" / "great_expectations.yml").is_file()


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="value_set"):
        Expectation(expectation="expect_column_values_to_be_in_set", column="grade")
    with pytest.raises(ValueError, match="column"):
        Expectation(expectation="expect_table_row_count_to_be_between", column="grade")
    trailing = {"expectation": "expect_table_row_count_within_trailing_range"}
    with pytest.raises(ValueError, match="at most one"):
        Suite.model_validate({"expectations": [trailing, trailing]})


def test_an_unknown_column_fails_the_expectation_with_the_reason(tmp_path: Path) -> None:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    _store(where.warehouse, DAY, 3)
    suite = Suite(
        expectations=[Expectation(expectation="expect_column_values_to_not_be_null", column="no")]
    )
    (outcome,) = run_suite(where, "d", "validated_cases", suite, [DAY], "run-x").outcomes
    assert isinstance(outcome, Outcome) and not outcome.success
    assert "GE could not evaluate it" in outcome.observed


def _row_count_seen(where: GxLocations, day: date) -> str:
    """Child process: validate one day; what GE observed for the table's row count."""
    suite = Suite(expectations=[Expectation.model_validate(SPECS[6])])
    (outcome,) = run_suite(where, "d", "validated_cases", suite, [day], f"run-{day}").outcomes
    return outcome.observed


@pytest.mark.xdist_group(FORK_SERVER_GROUP)  # forked from that worker's forkserver
def test_runs_of_different_days_validate_at_the_same_time(tmp_path: Path) -> None:
    """A backfill with a run per day validates days in parallel processes: each waits its
    turn (one DuckDB writer, one `checked_days` table, one GE project) and sees its own day."""
    from concurrent.futures import ProcessPoolExecutor

    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    days = {DAY + timedelta(days=i): rows for i, rows in enumerate((3, 4, 5, 6))}
    for day, rows in days.items():
        _store(where.warehouse, day, rows)
    with ProcessPoolExecutor(2, mp_context=shared_forkserver()) as pool:
        seen = list(pool.map(_row_count_seen, [where] * len(days), list(days)))
    assert seen == [f"{rows} rows" for rows in days.values()]


def test_a_validation_waits_for_its_turn_then_fails_naming_the_lock(tmp_path: Path) -> None:
    from filelock import FileLock

    from hitl_gate.quality.gx_suites import LOCK_FILE

    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse", lock_wait_s=0.2)
    _store(where.warehouse, DAY, 3)
    with FileLock(str(where.warehouse / LOCK_FILE)), pytest.raises(TimeoutError, match=LOCK_FILE):
        _row_count_seen(where, DAY)


@pytest.mark.parametrize("name", ["consumer_credit", "lending_club"])
def test_the_shipped_suites_load_and_name_only_columns_the_stage_has(name: str) -> None:
    domain = load_domain(name)
    assert domain.expectations is not None
    config = load_expectations(domain.source_dir / domain.expectations)
    assert set(config.suites) == {"validated_cases", "case_features"}
    assert config.suites["case_features"].blocking
    stage_columns = {
        "validated_cases": set(domain.contract.columns),
        "case_features": set(domain.features.names),
    }
    for stage, suite in config.suites.items():
        named = {e.column for e in suite.expectations if e.column is not None}
        assert named <= stage_columns[stage], (stage, named - stage_columns[stage])

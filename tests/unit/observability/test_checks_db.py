"""The anomaly checks counted in DuckDB give exactly `detect_all`'s findings.

Same scenarios as tests/unit/observability/test_observability.py (19 normal days, then a last
day that is normal, drifted, overridden, rubber-stamped or late), stored as a
`case_stage_times` table and one Parquet feature file per day; the Polars path reads the same
rows as frames. Every finding must match: pass/fail, severity, summary and details.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.observability.anomalies import Thresholds, detect_all, psi
from hitl_gate.observability.checks_db import DriftSource, detect_all_db, window_days
from hitl_gate.observability.daily import METRIC_CASE_COLUMNS
from hitl_gate.observability.metrics import default_decline_bands, with_review_facts
from tests.unit.observability.test_observability import (
    AS_OF,
    BANDS,
    DAYS,
    FEATURES,
    LAST,
    _day_cases,
    _features,
)

SCENARIOS = {
    "normal": ({}, 0.0),
    "drifted": ({"pd_shift": 0.05, "routes": (0.3, 0.3, 0.4)}, 0.8),
    "overrides": ({"override_rate": 0.7}, 0.0),
    "rubber_stamp": ({"reviewer": "rush", "override_rate": 0.0, "seconds_per_case": 2.0}, 0.0),
    "late": ({"late_hours": 60.0}, 0.0),
}


def _store(tmp_path: Path, last_day: dict, shift: float, small_last: bool = False):
    rng = np.random.default_rng(7)
    cases = pl.concat(
        [
            _day_cases(rng, d, 20 if small_last and d == LAST else 150,
                       **(last_day if d == LAST else {}))
            for d in DAYS
        ]
    ).with_columns(pl.lit("consumer_credit").alias("domain"))  # fmt: skip
    files: dict[date, Path] = {}
    for d in DAYS:
        path = tmp_path / f"{d}.parquet"
        _features(rng, d, 150, shift if d == LAST else 0.0).drop("partition_date").write_parquet(
            path
        )
        files[d] = path
    con = duckdb.connect()
    con.register("incoming", cases.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming")
    con.unregister("incoming")
    return con, files


def _polars_findings(
    con: duckdb.DuckDBPyConnection,
    files: dict[date, Path],
    t: Thresholds,
    days: list[date] | None = None,
):
    days = days or [LAST]
    window = window_days(days, t)
    cases = con.sql(
        f"SELECT {', '.join(METRIC_CASE_COLUMNS)} FROM case_stage_times WHERE domain = "
        "'consumer_credit' AND partition_date BETWEEN $a AND $b ORDER BY partition_date, case_id",
        params={"a": window[0], "b": window[-1]},
    ).pl()
    features = pl.concat(
        [
            pl.read_parquet(files[d], columns=FEATURES).with_columns(
                pl.lit(d).alias("partition_date")
            )
            for d in window
            if d in files
        ],
        how="diagonal_relaxed",
    )
    return detect_all(
        with_review_facts(cases, default_decline_bands(BANDS)), features, days=days,
        as_of=AS_OF, feature_columns=FEATURES, t=t,
    )  # fmt: skip


def _assert_same(got: list, expected: list) -> None:
    assert [f.check for f in got] == [f.check for f in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.check, mine.passed, mine.severity, mine.judged, mine.summary) == (
            theirs.check, theirs.passed, theirs.severity, theirs.judged, theirs.summary,
        )  # fmt: skip
        assert_frame_equal(mine.details, theirs.details, check_exact=True, check_dtypes=True)


@pytest.mark.parametrize("scenario", [*SCENARIOS, "small_day"])
def test_findings_equal_detect_all(tmp_path: Path, scenario: str) -> None:
    last_day, shift = SCENARIOS.get(scenario, ({}, 0.0))
    con, files = _store(tmp_path, last_day, shift, small_last=scenario == "small_day")
    t = Thresholds()
    expected = _polars_findings(con, files, t)
    got = detect_all_db(
        con, "consumer_credit", window_days([LAST], t), days=[LAST], as_of=AS_OF,
        decline_bands=default_decline_bands(BANDS), feature_files=files,
        feature_columns=FEATURES, t=t,
    )  # fmt: skip
    _assert_same(got, expected)
    if scenario != "normal":
        assert any(not f.passed for f in got)  # the scenario is seen, not just equal
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


@pytest.mark.parametrize("scenario", ["normal", "drifted"])
def test_a_run_of_many_days_gives_every_days_findings(tmp_path: Path, scenario: str) -> None:
    """A run of all 20 days (a backfill): 17 judged, each against its own trailing window,
    the drift statistics of all of them computed at once (normal: every day's PSI is in the
    details); a day misses its feature file."""
    con, files = _store(tmp_path, *SCENARIOS[scenario])
    del files[DAYS[9]]
    t = Thresholds()
    expected = _polars_findings(con, files, t, DAYS)
    got = detect_all_db(
        con, "consumer_credit", window_days(DAYS, t), days=DAYS, as_of=AS_OF,
        decline_bands=default_decline_bands(BANDS), feature_files=files,
        feature_columns=FEATURES, t=t,
    )  # fmt: skip
    _assert_same(got, expected)
    drift = {f.check: f for f in got}
    if scenario == "normal":
        assert drift["score_drift_psi"].details.height == 17
        assert drift["feature_drift_psi"].details.height == 2 * 17 - 2  # no file on day 10
    else:
        assert not drift["feature_drift_psi"].passed and not drift["score_drift_psi"].passed


def test_psi_from_sql_counts_equals_psi_with_nulls_ties_and_nan() -> None:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 6, 400).astype(float)
    base[::7] = np.nan
    today = rng.integers(1, 9, 120).astype(float)
    frame = pl.DataFrame(
        {
            "partition_date": [date(2018, 1, 1)] * 400 + [date(2018, 1, 2)] * 120,
            "x": [None if i % 11 == 0 else v for i, v in enumerate([*base, *today])],
        }
    )
    con = duckdb.connect()
    con.register("rel", frame.to_arrow())
    stats = DriftSource(con, "rel", 10).compare(
        date(2018, 1, 2), date(2018, 1, 1), date(2018, 1, 1), "x"
    )
    assert stats is not None
    base_frame = frame.filter(pl.col("partition_date") == date(2018, 1, 1))["x"]
    today_frame = frame.filter(pl.col("partition_date") == date(2018, 1, 2))["x"]
    assert (stats.psi, stats.bins) == psi(base_frame, today_frame, 10)
    assert (stats.cases, stats.baseline_cases) == (120, 400)


def test_columns_counted_together_or_one_per_query_give_each_columns_psi() -> None:
    rng = np.random.default_rng(11)
    days = [date(2018, 1, d) for d in (1, 2, 3)]
    frame = pl.DataFrame(
        {
            "partition_date": [d for d in days for _ in range(150)],
            "x": [None if i % 13 == 0 else float(v) for i, v in enumerate(rng.integers(0, 7, 450))],
            "y": rng.normal(0.0, 1.0, 450) + np.repeat([0.0, 0.0, 0.8], 150),
            "z": [None] * 450,  # no baseline value at all: no edges
        },
        schema_overrides={"z": pl.Float64},
    )
    con = duckdb.connect()
    con.register("rel", frame.to_arrow())
    windows = [(days[1], days[0], days[0]), (days[2], days[0], days[1])]
    together, apart = DriftSource(con, "rel", 10), DriftSource(con, "rel", 10, values_per_query=1)
    together.prepare(windows, ["x", "y", "z"])
    apart.prepare(windows, ["x", "y", "z"])
    for day, start, end in windows:
        base = frame.filter(pl.col("partition_date").is_between(start, end))
        today = frame.filter(pl.col("partition_date") == day)
        for column in ("x", "y", "z"):
            got = together.compare(day, start, end, column)
            assert got == apart.compare(day, start, end, column)
            assert got is not None
            assert (got.psi, got.bins) == psi(base[column], today[column], 10)

"""`decision_metrics` aggregated in DuckDB equals the Polars computation, value for value.

The Polars functions (`metrics.decision_metrics`) are the straightforward reference: one row
per case in a frame. The DuckDB path must give the same long table on random days built to
hit the corners: nulls in every optional column, ties, durations with microseconds (also
negative ones), verdict files shared by several cases, several days and another domain.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.observability.daily import METRIC_CASE_COLUMNS
from hitl_gate.observability.facts import case_facts
from hitl_gate.observability.metrics import decision_metrics
from hitl_gate.observability.metrics_db import (
    MAX_SELECTED_FRACTIONS,
    Distribution,
    decision_metrics_db,
    group_sizes_sql,
    nearest_fractions,
    quantile_sql,
)

DAY = date(2018, 2, 10)
AS_OF = datetime(2018, 2, 12, 8, 30, 15, 123456, tzinfo=UTC)
DECLINE = ["D", "E"]


def _maybe(rng: np.random.Generator, values: list, share_null: float) -> list:
    return [None if rng.random() < share_null else v for v in values]


def _times(rng: np.random.Generator, base: datetime, n: int, spread_s: float, nulls: float):
    offsets = rng.normal(spread_s, spread_s, n)  # some before `base`: negative durations
    micro = rng.integers(0, 1_000_000, n)
    values = [
        base + timedelta(seconds=float(np.floor(o)), microseconds=int(m))
        for o, m in zip(offsets, micro, strict=True)
    ]
    return _maybe(rng, values, nulls)


def random_cases(seed: int, day: date, n: int, domain: str = "consumer_credit") -> pl.DataFrame:
    """`case_stage_times` rows of one random day."""
    rng = np.random.default_rng(seed)
    start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    route = rng.choice(["auto_approve", "auto_decline", "human_review"], n, p=[0.5, 0.2, 0.3])
    review = route == "human_review"
    verdict = rng.choice(["approve", "decline"], n)
    files = rng.choice([f"file-{i}" for i in range(4)], n)
    answered = review & (rng.random(n) < 0.6)
    exported = [start + timedelta(hours=int(h)) if r else None
                for h, r in zip(rng.integers(1, 4, n), review, strict=True)]  # fmt: skip
    return pl.DataFrame(
        {
            "domain": domain,
            "partition_date": day,
            "case_id": [f"{domain}-{day}-{i}" for i in range(n)],
            "route": route,
            "route_rule_id": _maybe(rng, list(rng.choice(["R1", "R2", "AUTO"], n)), 0.1),
            "review_queue": [
                q if r else None
                for q, r in zip(rng.choice(["analyst", "senior"], n), review, strict=True)
            ],  # fmt: skip
            "risk_band": _maybe(rng, list(rng.choice(["A", "B", "C", "D", "E"], n)), 0.05),
            "policy_version": _maybe(rng, list(rng.choice(["v1", "v2"], n)), 0.05),
            "pd": _maybe(rng, list(rng.beta(2, 30, n).round(3)), 0.05),
            "ingested_at": _times(rng, start, n, 30, 0.05),
            "validated_at": _times(rng, start, n, 60, 0.1),
            "scored_at": _times(rng, start, n, 90, 0.2),
            "routed_at": _times(rng, start, n, 120, 0.05),
            "batch_queue": [
                q if e else None
                for q, e in zip(rng.choice(["analyst", "senior"], n), exported, strict=True)
            ],  # fmt: skip
            "exported_at": exported,
            "due_at": [
                e + timedelta(hours=24) if e and rng.random() > 0.1 else None for e in exported
            ],  # fmt: skip
            "verdict": [v if a else None for v, a in zip(verdict, answered, strict=True)],
            "reviewer_id": [
                r if a else None
                for r, a in zip(rng.choice(["ann", "bob", "cy"], n), answered, strict=True)
            ],  # fmt: skip
            "verdict_file_sha256": [
                f if a else None for f, a in zip(files, answered, strict=True)
            ],  # fmt: skip
            "verdict_received_at": [
                start + timedelta(hours=30, seconds=float(s)) if a else None
                for s, a in zip(rng.exponential(4000, n).round(3), answered, strict=True)
            ],
            "executed_action": _maybe(
                rng, list(np.where(route == "auto_decline", "decline", "approve")), 0.3
            ),  # fmt: skip
            "decided_by": _maybe(rng, list(np.where(review, "reviewer", "policy")), 0.3),
            "executed_at": _times(rng, start + timedelta(hours=2), n, 3000, 0.3),
        }
    )


def _case_stage_times(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    con.register("incoming", frame.to_arrow())
    con.execute("CREATE OR REPLACE TABLE case_stage_times AS SELECT * FROM incoming")
    con.unregister("incoming")


def _reference(con: duckdb.DuckDBPyConnection, days: list[date], **kwargs) -> pl.DataFrame:
    """What `read_metric_inputs` + `evaluate_metrics` computed: the frame, then Polars."""
    cases = con.sql(
        f"SELECT {', '.join(METRIC_CASE_COLUMNS)} FROM case_stage_times "
        "WHERE domain = 'consumer_credit' AND partition_date IN (SELECT unnest($days::DATE[])) "
        "ORDER BY partition_date, case_id",
        params={"days": days},
    ).pl()
    return decision_metrics(cases, as_of=AS_OF, decline_bands=DECLINE, **kwargs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_aggregation_equals_the_polars_metrics_on_random_days(seed: int) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    frame = pl.concat(
        [
            random_cases(seed, days[0], 700),
            random_cases(seed + 10, days[1], 333),
            random_cases(seed + 20, days[1] + timedelta(days=1), 50),  # not a run day
            random_cases(seed + 30, days[0], 80, domain="elsewhere"),
        ]
    )
    rng = np.random.default_rng(seed)
    ids = frame["case_id"].sample(400, seed=seed)
    outcomes = pl.DataFrame({"case_id": ids, "bad": rng.random(400) < 0.2})
    con = duckdb.connect()
    _case_stage_times(con, frame)
    expected = _reference(con, days, outcomes=outcomes)
    got = decision_metrics_db(
        con, "consumer_credit", days, as_of=AS_OF, decline_bands=DECLINE, outcomes=outcomes
    )
    assert expected.height > 200
    assert set(expected["metric"]) >= {
        "cases", "rate", "override_rate", "stage_latency_p95_s", "time_to_decision_p50_s",
        "bad_rate", "sla_breach_rate", "oldest_pending_age_h", "review_time_per_case_max_s",
    }  # fmt: skip
    assert_frame_equal(got, expected, check_exact=True)


def test_no_case_gives_an_empty_table_and_leaves_no_temporary_table() -> None:
    con = duckdb.connect()
    _case_stage_times(con, random_cases(1, DAY, 10))
    got = decision_metrics_db(
        con, "consumer_credit", [DAY - timedelta(days=1)], as_of=AS_OF, decline_bands=DECLINE
    )
    assert got.height == 0
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_memory_limit_is_restored() -> None:
    con = duckdb.connect()
    _case_stage_times(con, random_cases(4, DAY, 50))
    con.execute("SET memory_limit = '2GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchone()
    decision_metrics_db(con, "consumer_credit", [DAY], as_of=AS_OF, decline_bands=DECLINE)
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == before


@pytest.mark.parametrize("n", [1, 2, 3, 10, 21, 100, 101])
def test_order_statistics_match_polars_nearest_quantiles(n: int) -> None:
    values = np.random.default_rng(n).integers(0, 7, n).astype(float)  # many ties
    con = duckdb.connect()
    con.register("t", pl.DataFrame({"k": 1, "x": values}).to_arrow())
    quantiles = {"a": 0.5, "b": 0.95, "c": 0.1}
    fractions = nearest_fractions([n], quantiles.values())
    got = con.execute(quantile_sql("t", ["k"], "x", quantiles, fractions)).fetchone()
    series = pl.Series(values)
    assert got == (
        1,
        series.quantile(0.5, "nearest"),
        series.quantile(0.95, "nearest"),
        series.quantile(0.1, "nearest"),
        series.max(),
    )


def _polars_nearest(frame: pl.DataFrame) -> pl.DataFrame:
    """Per `k`, Polars' `nearest` p50 and p95 and the max of the non-null `x`."""
    return (
        frame.drop_nulls("x")
        .group_by("k")
        .agg(
            pl.col("x").quantile(0.5, "nearest").alias("p50"),
            pl.col("x").quantile(0.95, "nearest").alias("p95"),
            pl.col("x").max().alias("max"),
        )
        .sort("k")
    )


def test_order_statistics_of_groups_of_many_sizes_match_polars() -> None:
    """Groups of 1 to 40 values (one fraction list for all; ties, a group all null and thus
    absent) and one of 100,001: every group's p50 and p95 are Polars' `nearest` values."""
    rng = np.random.default_rng(7)
    sizes = [*range(1, 41), 100_001]
    keys = np.repeat(np.arange(len(sizes)), sizes)
    values = rng.integers(0, 50, keys.size).astype(float)  # ties in every group
    frame = pl.DataFrame({"k": keys, "x": values}).vstack(
        pl.DataFrame({"k": [99, 99], "x": [None, None]}, schema={"k": pl.Int64, "x": pl.Float64})
    )
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    quantiles = {"p50": 0.5, "p95": 0.95}
    counted = [n for (n,) in con.execute(group_sizes_sql("t", ["k"], "x")).fetchall()]
    assert sorted(counted) == sorted(sizes)  # the all-null group has no size
    sql = quantile_sql("t", ["k"], "x", quantiles, nearest_fractions(counted, quantiles.values()))
    got = con.sql(sql + " ORDER BY k").pl()
    assert_frame_equal(got, _polars_nearest(frame), check_exact=True, check_dtypes=False)


def test_order_statistics_are_selected_not_sorted_per_group() -> None:
    """The quantiles are DuckDB's selection (`quantile_disc`), not a window over every
    value sorted (`row_number()`: the metric queries' main CPU cost at a million cases)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i % 3 AS k, (i * 7919) % 1000 AS x FROM range(3000) r(i)")
    sql = quantile_sql("t", ["k"], "x", {"p50": 0.5}, nearest_fractions([1000], [0.5]))
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + sql).fetchall())
    assert "WINDOW" not in plan.upper()
    assert "quantile_disc" in sql


def test_groups_of_too_many_sizes_are_sorted_and_give_the_same_quantiles() -> None:
    """Past `MAX_SELECTED_FRACTIONS` a distribution's groups are sorted, not selected (each
    group would select every fraction); both give Polars' `nearest` values."""
    rng = np.random.default_rng(8)
    sizes = list(range(1, 81))  # 80 sizes: about 160 fractions
    keys = np.repeat(np.arange(len(sizes)), sizes)
    frame = pl.DataFrame({"k": keys, "x": rng.integers(0, 9, keys.size).astype(float)})
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    quantiles = {"p50": 0.5, "p95": 0.95}
    fractions = nearest_fractions(sizes, quantiles.values())
    assert len(fractions) > MAX_SELECTED_FRACTIONS
    shown = Distribution("t", "x", "x", "k", "k")
    assert "row_number()" in shown.query(sizes) and "quantile_disc" not in shown.query(sizes)
    assert "quantile_disc" in shown.query(sizes[:10])
    sorted_ = con.sql(quantile_sql("t", ["k"], "x", quantiles, None) + " ORDER BY k").pl()
    selected = con.sql(quantile_sql("t", ["k"], "x", quantiles, fractions) + " ORDER BY k").pl()
    assert_frame_equal(sorted_, selected, check_exact=True)
    assert_frame_equal(selected, _polars_nearest(frame), check_exact=True, check_dtypes=False)


def test_a_small_day_of_corner_cases_equals_the_polars_metrics() -> None:
    """One case on one day, ties and empty groups on the other (no reviewed case, every
    latency of a stage null): the DuckDB metrics equal the Polars reference."""
    single = random_cases(41, DAY, 1)
    tied = random_cases(42, DAY + timedelta(days=1), 12).with_columns(
        pl.lit(None, pl.String).alias("verdict"),
        pl.lit(None, pl.String).alias("reviewer_id"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("verdict_received_at"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("scored_at"),
        pl.lit(datetime(2018, 2, 11, 9, tzinfo=UTC)).alias("executed_at"),  # all tied
    )
    days = [DAY, DAY + timedelta(days=1)]
    con = duckdb.connect()
    _case_stage_times(con, pl.concat([single, tied], how="vertical_relaxed"))
    expected = _reference(con, days)
    got = decision_metrics_db(con, "consumer_credit", days, as_of=AS_OF, decline_bands=DECLINE)
    assert "time_to_decision_p95_s" in set(expected["metric"])
    assert_frame_equal(got, expected, check_exact=True)


def test_facts_loaded_for_the_window_give_the_run_days_metrics() -> None:
    """Loaded once for the checks' window and the run day (`facts.case_facts`), the metrics
    are the run day's alone: a verdict file holding baseline cases too counts, per case, only
    the run day's cases, as when the metrics read the run day by themselves."""
    window = [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    frame = pl.concat([random_cases(11 + i, day, 300) for i, day in enumerate(window)])
    con = duckdb.connect()
    _case_stage_times(con, frame)
    expected = _reference(con, [DAY])
    with case_facts(con, "consumer_credit", [DAY], DECLINE, window=window) as facts:
        got = decision_metrics_db(
            con, "consumer_credit", [DAY], as_of=AS_OF, decline_bands=DECLINE, facts=facts
        )
        per_case = con.sql(
            "SELECT m.review_seconds_per_case AS run, c.review_seconds_per_case AS window "
            "FROM metric_facts m JOIN check_facts c USING (case_id) "
            "WHERE m.review_seconds_per_case IS NOT NULL"
        ).pl()
        with pytest.raises(ValueError, match="load them"):
            decision_metrics_db(
                con, "consumer_credit", window, as_of=AS_OF, decline_bands=DECLINE, facts=facts
            )
    assert_frame_equal(got, expected, check_exact=True)
    # The shared files are seen: the window's count differs from the run day's.
    assert per_case.height > 50 and (per_case["run"] != per_case["window"]).all()
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)
    views = "SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal"
    assert con.execute(views).fetchone() == (0,)


def test_metrics_under_a_memory_limit_that_spills_equal_the_unbounded_metrics(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's peak is bounded by DuckDB's memory limit, not by the day: with a limit far
    below the facts' size DuckDB spills the facts table and the aggregations' state to its
    temporary directory, and every metric stays exact (quantiles with ties and null stage
    times, a run day without a case); a limit too small for DuckDB's own blocks fails loudly,
    so the limit is the one the queries ran under."""
    import hitl_gate.observability.metrics_db as metrics_db

    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]  # the last: no case
    frame = pl.concat([random_cases(5, days[0], 60_000), random_cases(6, days[1], 300)])
    spilled: list[int] = []
    real = metrics_db._metric_rows

    def spy(con: duckdb.DuckDBPyConnection, *args):  # the facts are loaded: what spilled
        size = "SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()"
        spilled.append(con.execute(size).fetchall()[0][0])
        return real(con, *args)

    monkeypatch.setattr(metrics_db, "_metric_rows", spy)

    def metrics(limit: str | None) -> pl.DataFrame:
        con = duckdb.connect(config={"temp_directory": str(tmp_path / "spill")})
        _case_stage_times(con, frame)
        return decision_metrics_db(
            con, "consumer_credit", days, as_of=AS_OF, decline_bands=DECLINE, limit=limit
        )

    unbounded, bounded = metrics(None), metrics("32MB")
    assert spilled[0] == 0 and spilled[1] > 2**20, spilled  # the facts did not fit
    assert_frame_equal(bounded, unbounded, check_exact=True)
    assert set(bounded["partition_date"]) == set(days[:2])
    assert {"time_to_decision_p95_s", "stage_latency_p50_s"} <= set(bounded["metric"])
    with pytest.raises(duckdb.OutOfMemoryException):
        metrics("4MB")


def test_the_distributions_are_aggregated_one_at_a_time_under_the_limit(tmp_path) -> None:
    """An exact quantile keeps its group's values in state DuckDB cannot spill; run as one
    `UNION ALL`, the seven distributions' states were alive together and a 10M-case day ran
    out of the step's 1 GB limit (session 25). Scaled down: 200,000 cases under 31 MB on two
    threads, where all seven together do not fit (the union failed here) and one at a time do;
    the metrics equal the unbounded ones."""
    frame = random_cases(5, DAY, 200_000)

    def metrics(limit: str | None) -> pl.DataFrame:
        con = duckdb.connect(config={"temp_directory": str(tmp_path / "spill"), "threads": 2})
        _case_stage_times(con, frame)
        return decision_metrics_db(
            con, "consumer_credit", [DAY], as_of=AS_OF, decline_bands=DECLINE, limit=limit
        )

    assert_frame_equal(metrics("31MB"), metrics(None), check_exact=True)

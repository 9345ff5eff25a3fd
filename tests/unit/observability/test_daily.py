"""One run's decision metrics: inputs read from a small audit database, evaluated, stored."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from assets.metrics import CHECKS
from hitl_gate.core.database import audit_connection, insert_new_rows, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.observability.anomalies import Thresholds
from hitl_gate.observability.daily import (
    MetricInputs,
    MetricSettings,
    StageMaterialization,
    baseline_start,
    describe_model_runs,
    evaluate_metrics,
    model_run_folders,
    read_metric_inputs,
    read_model_features,
    record_stage_times,
    runs_without_stage_times,
    store_metrics,
    write_run_report,
)
from hitl_gate.observability.metrics import metric_value

DAY = date(2018, 1, 20)
AS_OF = datetime(2018, 1, 21, tzinfo=UTC)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def decision_rows(day: date, routes: list[str], run_id: str, domain: str = "consumer_credit"):
    """Minimal `decisions` rows of one day: one per route given, auto routes executed."""
    decided = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    return pl.DataFrame(
        {
            "domain": domain,
            "case_id": [f"{day}-{i}" for i in range(len(routes))],
            "partition_date": day,
            "route": routes,
            "risk_band": ["A" if r == "auto_approve" else "E" for r in routes],
            "pd": [0.01 + 0.01 * i for i in range(len(routes))],
            "model_name": "credit_scorecard",
            "model_version": "1",
            "model_run_id": "mlflow-run-1",
            "run_id": run_id,
            "decided_at": decided,
            "qa_sample": False,
        }
    )


def executions(decisions: pl.DataFrame) -> pl.DataFrame:
    """An executed action for every automatic decision (review cases stay open)."""
    auto = decisions.filter(pl.col("route") != "human_review")
    return auto.select(
        "domain",
        "case_id",
        "partition_date",
        pl.col("route").str.strip_prefix("auto_").alias("action"),
        pl.lit("policy").alias("decided_by"),
        "route",
        "run_id",
        (pl.col("decided_at") + timedelta(minutes=5)).alias("executed_at"),
    )


def seed(con: duckdb.DuckDBPyConnection, decisions: pl.DataFrame) -> None:
    insert_new_rows(con, "decisions", decisions)
    insert_new_rows(con, "executions", executions(decisions))


def test_default_decline_bands_are_the_upper_half(domain: DomainConfig) -> None:
    assert MetricSettings().decline_bands_for(domain) == ["D", "E"]
    assert MetricSettings(decline_bands=("E",)).decline_bands_for(domain) == ["E"]


def test_the_window_runs_from_the_baseline_start_to_the_last_day() -> None:
    t = Thresholds(baseline_days=3)
    days = [DAY, DAY + timedelta(days=1)]
    assert baseline_start(days, t) == DAY - timedelta(days=3)
    inputs = MetricInputs(
        days, baseline_start(days, t), pl.DataFrame(), pl.DataFrame(), pl.DataFrame()
    )
    assert inputs.window == [DAY + timedelta(days=i) for i in range(-3, 2)]


@pytest.mark.usefixtures("fresh_audit_db")
def test_inputs_cover_the_window_and_the_run_days_only(tmp_path: Path) -> None:
    t = Thresholds(baseline_days=2)
    with audit_connection(tmp_path / "audit.duckdb") as con:
        seed(con, decision_rows(DAY - timedelta(days=5), ["auto_approve"], "old"))  # outside
        seed(con, decision_rows(DAY - timedelta(days=1), ["auto_approve"] * 2, "base"))
        seed(con, decision_rows(DAY, ["auto_approve", "auto_decline", "human_review"], "now"))
        seed(con, decision_rows(DAY, ["auto_approve"], "other", domain="elsewhere"))
        inputs = read_metric_inputs(con, "consumer_credit", [DAY], t)
    assert inputs.cases.height == 5  # the day and its baseline, not older, not other domains
    assert inputs.run_cases.height == 3
    assert inputs.model_runs.rows() == [("credit_scorecard", "1", "mlflow-run-1")]
    assert inputs.qa.height == 0


@pytest.mark.usefixtures("fresh_audit_db")
def test_only_runs_without_stage_times_are_pending(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "audit.duckdb") as con:
        seed(con, decision_rows(DAY, ["auto_approve"], "run-a"))
        seed(
            con,
            decision_rows(DAY, ["auto_approve"], "run-b").with_columns(case_id=pl.lit("b")),
        )
        insert_new_rows(
            con,
            "stage_materializations",
            pl.DataFrame(
                {
                    "domain": "consumer_credit",
                    "run_id": "run-a",
                    "stage": "risk_scores",
                    "partition_date": DAY,
                    "materialized_at": AS_OF,
                }
            ),  # fmt: skip
        )
        assert runs_without_stage_times(con, "consumer_credit", [DAY]) == ["run-b"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_stage_times_are_recorded_once(tmp_path: Path) -> None:
    events = [
        StageMaterialization("run-a", "risk_scores", DAY, AS_OF),
        StageMaterialization("run-a", "routed_decisions", DAY, AS_OF + timedelta(seconds=5)),
    ]
    with audit_connection(tmp_path / "audit.duckdb") as con:
        assert record_stage_times(con, "consumer_credit", []) == 0
        assert record_stage_times(con, "consumer_credit", events) == 2
        assert record_stage_times(con, "consumer_credit", events) == 0
        stored = query_frame(
            con, "SELECT domain, stage FROM stage_materializations ORDER BY materialized_at"
        )
        assert runs_without_stage_times(con, "consumer_credit", [DAY]) == []
    assert stored.rows() == [
        ("consumer_credit", "risk_scores"),
        ("consumer_credit", "routed_decisions"),
    ]


def evaluated(tmp_path: Path, domain: DomainConfig, settings: MetricSettings):
    with audit_connection(tmp_path / "audit.duckdb") as con:
        seed(con, decision_rows(DAY, ["auto_approve", "auto_approve", "human_review"], "now"))
        inputs = read_metric_inputs(con, domain.name, [DAY], settings.thresholds)
    evaluation = evaluate_metrics(
        inputs,
        domain,
        settings,
        as_of=AS_OF,
        outcomes=pl.DataFrame({"case_id": [f"{DAY}-0"], "bad": [True]}),
        features=read_model_features(tmp_path / "feast", domain, inputs.window),
    )
    return inputs, evaluation


def test_evaluation_counts_the_run_days_and_runs_every_detector(
    tmp_path: Path, domain: DomainConfig
) -> None:
    _, evaluation = evaluated(tmp_path, domain, MetricSettings())
    assert evaluation.cases == 3
    assert metric_value(evaluation.metrics, "cases") == 3
    assert metric_value(evaluation.metrics, "cases", "route", "auto_approve") == 2
    # Every declared asset check, in its declared order: the list is read, never copied.
    assert [f.check for f in evaluation.findings] == list(CHECKS)
    # One day with no history: nothing is judged, nothing fails.
    assert evaluation.checks_failed == 0


@pytest.mark.usefixtures("fresh_audit_db")
def test_storing_replaces_the_days_and_writes_traces_when_asked(
    tmp_path: Path, domain: DomainConfig
) -> None:
    _, evaluation = evaluated(tmp_path, domain, MetricSettings())
    traces = tmp_path / "traces"
    with audit_connection(tmp_path / "audit.duckdb") as con:
        for run in ("run-1", "run-2"):
            files = store_metrics(con, evaluation, domain.name, run, MetricSettings(), traces)
        stored = query_frame(
            con, "SELECT DISTINCT run_id, count(*) OVER () AS n FROM decision_metrics"
        )
        quiet = store_metrics(
            con, evaluation, domain.name, "run-3", MetricSettings(write_traces=False), traces
        )
    assert stored.rows() == [("run-2", evaluation.metrics.height)]
    assert [f.path.name for f in files] == [f"{DAY}.jsonl"]
    assert files[0].traces == 3 and files[0].sample_ratio == 1.0
    assert quiet == []


def test_links_and_report_name_the_deciding_model(tmp_path: Path, domain: DomainConfig) -> None:
    inputs, evaluation = evaluated(tmp_path, domain, MetricSettings())
    assert describe_model_runs(inputs.model_runs) == "credit_scorecard v1 run mlflow-run-1"
    folders = model_run_folders(tmp_path / "mlflow", inputs.model_runs)
    assert list(folders) == ["mlflow_run_credit_scorecard_v1"]
    assert folders["mlflow_run_credit_scorecard_v1"].parts[-2:] == ("mlflow-run-1", "artifacts")
    report = write_run_report(
        tmp_path / "reports", domain, "run-9", evaluation, {"a": "b"}, thresholds=Thresholds()
    )
    assert report.name == "run-9.html"
    assert report.read_text() == (report.parent / "latest.html").read_text()
    assert "Operations report: consumer_credit" in report.read_text()


@pytest.mark.usefixtures("fresh_audit_db")
def test_fairness_rows_and_checks_use_the_stored_protected_values(
    tmp_path: Path, domain: DomainConfig
) -> None:
    from hitl_gate.core.lawful import ProtectedAttribute
    from hitl_gate.observability.fairness_period import read_protected_values

    declared = domain.model_copy(
        update={
            "protected_attributes": {
                "homeownership": ProtectedAttribute(category="other", reference="OWN")
            }
        }
    )
    stored = tmp_path / "warehouse" / domain.name / "validated_cases"
    stored.mkdir(parents=True)
    pl.DataFrame(
        {
            "application_id": [f"{DAY}-{i}" for i in range(3)],
            "homeownership": ["OWN", "RENT", "RENT"],
            "annual_income": [1.0, 2.0, 3.0],
        }
    ).write_parquet(stored / f"{DAY}.parquet")
    protected = read_protected_values(tmp_path / "warehouse", declared, [DAY, DAY - timedelta(1)])
    assert protected.columns == ["case_id", "homeownership"], "only what fairness needs"
    with audit_connection(tmp_path / "audit.duckdb") as con:
        seed(con, decision_rows(DAY, ["auto_approve", "auto_decline", "auto_approve"], "now"))
        inputs = read_metric_inputs(con, domain.name, [DAY], MetricSettings().thresholds)
    evaluation = evaluate_metrics(
        inputs,
        declared,
        MetricSettings(),
        as_of=AS_OF,
        outcomes=pl.DataFrame({"case_id": [], "bad": []}),
        features=read_model_features(tmp_path / "feast", domain, inputs.window),
        protected=protected,
    )
    air = evaluation.metrics.filter(
        (pl.col("metric") == "fairness_air") & (pl.col("dimension") == "homeownership@final_action")
    )
    assert dict(zip(air["key"], air["value"], strict=True)) == {"OWN": 1.0, "RENT": 0.5}
    impact = next(f for f in evaluation.findings if f.check == "fairness_adverse_impact")
    assert impact.passed, "one case a group is below min_group_cases: reported, not judged"


@pytest.mark.usefixtures("fresh_audit_db")
def test_run_summary_states_the_route_shares(tmp_path: Path) -> None:
    from hitl_gate.observability.run_summary import route_share_lines

    with audit_connection(tmp_path / "audit.duckdb") as con:
        seed(con, decision_rows(DAY, ["auto_approve"] * 3 + ["human_review"], "now"))
        assert route_share_lines(con, "consumer_credit", DAY, DAY) == [
            "routes of 4 cases: auto_approve 3 (75.0%), human_review 1 (25.0%)"
        ]
        assert (
            route_share_lines(con, "consumer_credit", DAY + timedelta(1), DAY + timedelta(2)) == []
        )


@pytest.mark.usefixtures("fresh_audit_db")
def test_evaluation_in_duckdb_equals_the_frame_evaluation(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The asset's path (`evaluate_metrics_db`) against the frames' (`evaluate_metrics`) on
    the real audit schema: five days of history, review cases, outcomes, features, fairness."""
    from polars.testing import assert_frame_equal

    from hitl_gate.core.lawful import ProtectedAttribute
    from hitl_gate.observability.daily import evaluate_metrics_db
    from hitl_gate.observability.fairness_period import read_protected_values

    declared = domain.model_copy(
        update={"protected_attributes": {"homeownership": ProtectedAttribute(category="other")}}
    )
    rng = np.random.default_rng(3)
    routes = ["auto_approve", "auto_decline", "human_review"]
    stored = tmp_path / "warehouse" / domain.name / "validated_cases"
    stored.mkdir(parents=True)
    readable = [tmp_path / "warehouse"]  # as the asset's connection: the warehouse only
    with audit_connection(tmp_path / "audit.duckdb", readable=readable) as con:
        for back in range(5, -1, -1):
            day = DAY - timedelta(days=back)
            chosen = list(rng.choice(routes, 60 + 10 * back, p=[0.6, 0.15, 0.25]))
            seed(con, decision_rows(day, chosen, f"run-{back}"))
            pl.DataFrame(
                {
                    "application_id": [f"{day}-{i}" for i in range(len(chosen))],
                    "homeownership": list(rng.choice(["OWN", "RENT", "MORTGAGE"], len(chosen))),
                }
            ).write_parquet(stored / f"{day}.parquet")
        settings = MetricSettings(thresholds=Thresholds(min_baseline_days=2))
        frames = read_metric_inputs(con, domain.name, [DAY], settings.thresholds)
        slim = read_metric_inputs(con, domain.name, [DAY], settings.thresholds, with_cases=False)
        protected = read_protected_values(tmp_path / "warehouse", declared, [DAY])
        outcomes = pl.DataFrame({"case_id": [f"{DAY}-{i}" for i in range(0, 40, 3)],
                                 "bad": [i % 2 == 0 for i in range(0, 40, 3)]})  # fmt: skip
        common = {"as_of": AS_OF, "outcomes": outcomes}
        got = evaluate_metrics_db(
            con, slim, declared, settings, feast_dir=tmp_path / "feast",
            warehouse=tmp_path / "warehouse", **common,
        )  # fmt: skip
    assert slim.cases.height == 0 and frames.cases.height > 300
    expected = evaluate_metrics(
        frames, declared, settings,
        features=read_model_features(tmp_path / "feast", domain, frames.window),
        protected=protected, **common,
    )  # fmt: skip
    assert got.cases == expected.cases == 60
    assert_frame_equal(got.metrics, expected.metrics, check_exact=True)
    assert {m for m in got.metrics["metric"]} >= {"fairness_air", "bad_rate", "rate"}
    assert [(f.check, f.state, f.summary) for f in got.findings] == [
        (f.check, f.state, f.summary) for f in expected.findings
    ]
    assert sum(f.judged for f in got.findings) >= 3


@pytest.mark.usefixtures("fresh_audit_db")
def test_traces_sample_by_the_facts_counts_under_the_metrics_memory_limit(
    tmp_path: Path, domain: DomainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store_metrics` after `evaluate_metrics_db` writes, byte for byte, the trace files the
    view's own count gives, taking the days' counts from the facts (no count through the
    view), and runs the traces' query under the metrics' DuckDB memory limit."""
    import hitl_gate.observability.daily as daily
    from hitl_gate.observability.daily import evaluate_metrics_db
    from hitl_gate.observability.metrics_db import METRICS_MEMORY_LIMIT
    from hitl_gate.observability.traces import write_traces

    seen: list[tuple[str, object]] = []

    def spy(con: duckdb.DuckDBPyConnection, *args: object) -> object:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        seen.append((limit, args[-1]))
        return write_traces(con, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(daily, "write_traces", spy)
    days = [DAY - timedelta(days=1), DAY]
    settings = MetricSettings(trace_max_cases_per_day=25)
    rng = np.random.default_rng(4)
    routes = ["auto_approve", "auto_decline", "human_review"]
    with audit_connection(tmp_path / "audit.duckdb") as con:
        for day, n in zip(days, (90, 20), strict=True):
            seed(con, decision_rows(day, list(rng.choice(routes, n)), "run-1"))
        inputs = read_metric_inputs(con, domain.name, days, settings.thresholds, with_cases=False)
        evaluation = evaluate_metrics_db(
            con, inputs, domain, settings, as_of=AS_OF,
            outcomes=pl.DataFrame(schema={"case_id": pl.String, "bad": pl.Boolean}),
            feast_dir=tmp_path / "feast", warehouse=tmp_path / "warehouse",
        )  # fmt: skip
        files = store_metrics(con, evaluation, domain.name, "run-1", settings, tmp_path / "t")
        by_view = write_traces(con, domain.name, tmp_path / "view", days, 25)
    scratch = duckdb.connect()
    scratch.execute(f"SET memory_limit = '{METRICS_MEMORY_LIMIT}'")
    expected_limit = scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert evaluation.day_rows == {days[0]: 90, days[1]: 20}
    assert seen == [(expected_limit, evaluation.day_rows)]
    assert files[0].sample_ratio < 1 and files[1].sample_ratio == 1
    for got, expected in zip(files, by_view, strict=True):
        assert (got.traces, got.sample_ratio) == (expected.traces, expected.sample_ratio)
        assert got.path.read_bytes() == expected.path.read_bytes()


@pytest.mark.usefixtures("fresh_audit_db")
def test_every_phase_runs_under_the_settings_memory_limit(
    tmp_path: Path, domain: DomainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`MetricSettings.memory_limit` (the asset's `duckdb_memory_limit`) is DuckDB's limit on
    the step's connection while the facts are read and every consumer aggregates them, and
    while the traces are written; the step's limit is not left on the connection."""
    import hitl_gate.observability.checks_db as checks_db
    import hitl_gate.observability.daily as daily
    import hitl_gate.observability.fairness_db as fairness_db

    seen: dict[str, str] = {}

    def spying(name: str, module: object):
        real = getattr(module, name)

        def spy(con: duckdb.DuckDBPyConnection, *args: object, **kwargs: object) -> object:
            seen[name] = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
            if "limit" in kwargs:
                seen[f"{name} limit"] = str(kwargs["limit"])
            return real(con, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    for name, module in [
        ("decision_metrics_db", daily), ("write_traces", daily),
        ("detect_all_db", checks_db), ("fairness_db", fairness_db),
    ]:  # fmt: skip
        spying(name, module)
    settings = MetricSettings(memory_limit="96MB")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        own = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        seed(con, decision_rows(DAY, ["auto_approve", "human_review", "auto_decline"], "r"))
        inputs = read_metric_inputs(con, domain.name, [DAY], settings.thresholds, with_cases=False)
        evaluation = daily.evaluate_metrics_db(
            con, inputs, domain, settings, as_of=AS_OF,
            outcomes=pl.DataFrame(schema={"case_id": pl.String, "bad": pl.Boolean}),
            feast_dir=tmp_path / "feast", warehouse=tmp_path / "warehouse",
        )  # fmt: skip
        store_metrics(con, evaluation, domain.name, "r", settings, tmp_path / "traces")
        after = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    scratch = duckdb.connect()
    scratch.execute("SET memory_limit = '96MB'")
    limit = scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert limit != own and after != limit  # (restored as DuckDB prints it: rounded)
    assert seen == {
        "decision_metrics_db": limit, "decision_metrics_db limit": "None",  # the step's
        "detect_all_db": limit, "detect_all_db limit": "96MB",
        "fairness_db": limit, "write_traces": limit,
    }  # fmt: skip

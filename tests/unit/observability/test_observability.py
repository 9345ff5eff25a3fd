"""Metrics and anomaly detection on constructed scenarios: each must trigger, a normal day not."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from hitl_gate.observability import traces
from hitl_gate.observability.anomalies import Thresholds, detect_all, psi
from hitl_gate.observability.metrics import (
    decision_metrics,
    default_decline_bands,
    metric_value,
    with_review_facts,
)
from hitl_gate.observability.traces import write_day_traces, write_traces

DAYS = [date(2018, 1, 1) + timedelta(days=i) for i in range(20)]
LAST = DAYS[-1]
BANDS = ["A", "B", "C", "D", "E"]
FEATURES = ["f1", "f2"]
AS_OF = datetime(2018, 1, 25, tzinfo=UTC)


def _day_cases(
    rng: np.random.Generator,
    day: date,
    n: int,
    *,
    routes: tuple[float, float, float] = (0.6, 0.05, 0.35),
    pd_shift: float = 0.0,
    reviewer: str = "alice",
    override_rate: float = 0.1,
    seconds_per_case: float = 120.0,
    late_hours: float = 0.0,
) -> pl.DataFrame:
    """One day of `case_stage_times` rows: routes, bands, a reviewer answering one file."""
    start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    route = rng.choice(["auto_approve", "auto_decline", "human_review"], n, p=list(routes))
    pd_ = np.clip(rng.beta(2, 60, n) + pd_shift, 0, 1)
    band = np.array(BANDS)[np.searchsorted([0.01, 0.02, 0.04, 0.08], pd_)]
    review = route == "human_review"
    proposed = np.where(np.isin(band, ["D", "E"]), "decline", "approve")
    flip = rng.random(n) < override_rate
    verdict = np.where(flip, np.where(proposed == "approve", "decline", "approve"), proposed)
    exported = start + timedelta(hours=1)
    received = exported + timedelta(seconds=seconds_per_case * int(review.sum()))
    received += timedelta(hours=late_hours)
    action = np.where(
        route == "auto_approve", "approve", np.where(route == "auto_decline", "decline", verdict)
    )
    return pl.DataFrame(
        {
            "domain": "d",
            "case_id": [f"{day}-{i}" for i in range(n)],
            "partition_date": day,
            "route": route,
            "route_rule_id": np.where(review, "REV-X", "AUTO"),
            "review_queue": "analyst",
            "risk_band": band,
            "policy_version": "v1",
            "pd": pd_,
            "ingested_at": start,
            "validated_at": start + timedelta(minutes=1),
            "scored_at": start + timedelta(minutes=2),
            "routed_at": start + timedelta(minutes=3),
            "batch_queue": "analyst",
            "exported_at": [exported if r else None for r in review],
            "due_at": [exported + timedelta(hours=48) if r else None for r in review],
            "verdict": verdict,
            "reviewer_id": reviewer,
            "verdict_file_sha256": f"file-{day}",
            "verdict_received_at": [received if r else None for r in review],
            "executed_action": action,
            "decided_by": np.where(review, "reviewer", "policy"),
            "executed_at": [
                received + timedelta(minutes=1) if r else start + timedelta(minutes=4)
                for r in review
            ],
        }
    ).with_columns(
        pl.when(pl.col("route") == "human_review").then(pl.col(c)).otherwise(None).alias(c)
        for c in ("review_queue", "batch_queue", "verdict", "reviewer_id", "verdict_file_sha256")
    )


def _features(rng: np.random.Generator, day: date, n: int, shift: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {"partition_date": day, "f1": rng.normal(shift, 1, n), "f2": rng.poisson(2 + shift, n)}
    )


def _scenario(last_day: dict | None = None, last_features_shift: float = 0.0):
    """19 normal days, then the last day with `last_day` overrides of the generator."""
    rng = np.random.default_rng(7)
    cases = pl.concat(
        [_day_cases(rng, d, 150, **(last_day or {}) if d == LAST else {}) for d in DAYS]
    )
    features = pl.concat(
        [_features(rng, d, 150, last_features_shift if d == LAST else 0.0) for d in DAYS]
    )
    return with_review_facts(cases, default_decline_bands(BANDS)), features


def _findings(cases: pl.DataFrame, features: pl.DataFrame) -> dict:
    found = detect_all(
        cases, features, days=[LAST], as_of=AS_OF, feature_columns=FEATURES, t=Thresholds()
    )
    return {f.check: f for f in found}


def test_normal_day_triggers_nothing() -> None:
    findings = _findings(*_scenario())
    failed = {name: f.summary for name, f in findings.items() if not f.passed}
    assert failed == {}
    assert "days judged" in findings["route_mix_shift"].summary


def test_drifted_day_triggers_score_feature_and_route_checks() -> None:
    cases, features = _scenario(
        {"pd_shift": 0.05, "routes": (0.3, 0.3, 0.4)}, last_features_shift=1.5
    )
    findings = _findings(cases, features)
    for name in ("score_drift_psi", "feature_drift_psi", "route_mix_shift"):
        assert not findings[name].passed, name
    assert findings["feature_drift_psi"].severity == "ERROR"
    assert "f1" in findings["feature_drift_psi"].summary
    assert "PSI of" in findings["score_drift_psi"].summary
    assert findings["volume_drop"].passed


def test_rubber_stamping_reviewer_is_flagged() -> None:
    cases, features = _scenario({"reviewer": "bob", "override_rate": 0.0, "seconds_per_case": 2})
    finding = _findings(cases, features)["automation_bias"]
    assert not finding.passed
    assert finding.details["reviewer_id"].to_list() == ["bob"]
    assert "near-zero review time" in finding.summary and "never overrides" in finding.summary


def test_sla_breach_is_an_error_when_widespread() -> None:
    cases, features = _scenario({"late_hours": 60})
    finding = _findings(cases, features)["sla_breaches"]
    assert not finding.passed and finding.severity == "ERROR"
    assert "breached their review SLA" in finding.summary


def test_override_spike_and_volume_drop() -> None:
    findings = _findings(*_scenario({"override_rate": 0.7}))
    assert not findings["override_rate_spike"].passed
    rng = np.random.default_rng(1)
    cases, features = _scenario()
    small = with_review_facts(_day_cases(rng, LAST, 20), default_decline_bands(BANDS))
    cases = pl.concat([cases.filter(pl.col("partition_date") != LAST), small])
    finding = _findings(cases, features)["volume_drop"]
    assert not finding.passed and finding.severity == "ERROR"
    assert "20 cases" in finding.summary


def test_psi_is_zero_for_identical_and_large_for_shifted() -> None:
    values = pl.Series(np.random.default_rng(3).normal(0, 1, 5000))
    same, _ = psi(values, values)
    shifted, _ = psi(values, values + 1.0)
    assert same == pytest.approx(0.0, abs=1e-9)
    assert shifted > 0.5


def test_decision_metrics_counts_rates_and_overrides() -> None:
    rng = np.random.default_rng(11)
    cases = _day_cases(rng, LAST, 200, override_rate=0.0)
    metrics = decision_metrics(cases, as_of=AS_OF, decline_bands=["D", "E"])
    assert metric_value(metrics, "cases") == 200
    routed = sum(
        metric_value(metrics, "cases", "route", r) or 0
        for r in ("auto_approve", "auto_decline", "human_review")
    )
    assert routed == 200
    reviewed = metric_value(metrics, "reviewed")
    assert reviewed == (cases["route"] == "human_review").sum()
    assert metric_value(metrics, "override_rate") == 0.0
    assert metric_value(metrics, "override_rate", "reviewer", "alice") == 0.0
    assert metric_value(metrics, "backlog") == 0
    assert metric_value(metrics, "time_to_decision_p95_s", "decided_by", "policy") == 240.0
    assert metric_value(metrics, "stage_latency_p50_s", "stage", "scored") == 60.0


def _traced_cases(n: int) -> pl.DataFrame:
    """`case_stage_times` rows with the run-id columns the traces carry."""
    return _day_cases(np.random.default_rng(5), LAST, n).with_columns(
        pl.lit("run-1").alias("decision_run_id"),
        pl.lit("run-1").alias("validation_run_id"),
        pl.lit(None, pl.String).alias("export_run_id"),
        pl.lit(None, pl.String).alias("verdict_run_id"),
        pl.lit("run-1").alias("execution_run_id"),
    )


def _trace_lines(cases: pl.DataFrame, path, max_traces: int | None) -> list[dict]:
    """Write the day's traces from an in-memory DuckDB table named like the audit view."""
    import duckdb

    con = duckdb.connect()
    con.register("incoming", cases.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming").fetchall()
    written = write_day_traces(con, "d", LAST, path, max_traces)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert written.traces == len(lines)
    return lines


def _spans(line: dict) -> list[dict]:
    return line["resourceSpans"][0]["scopeSpans"][0]["spans"]


def test_otlp_trace_lines_are_well_formed(tmp_path) -> None:
    cases = _traced_cases(3)
    lines = _trace_lines(cases, tmp_path / "day.jsonl", max_traces=None)
    assert len(lines) == 3
    root, *stages = _spans(lines[0])
    assert len(root["traceId"]) == 32 and len(root["spanId"]) == 16
    assert {s["parentSpanId"] for s in stages} == {root["spanId"]}
    assert [s["name"] for s in stages][:4] == ["ingested", "validated", "scored", "routed"]
    assert stages[-1]["name"] == "executed"
    assert all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) for s in _spans(lines[0]))
    # Each stage span ends when the case reached that stage, to the microsecond.
    case = cases.filter(pl.col("case_id") == root["attributes"][1]["value"]["stringValue"])
    for span in stages:
        at = case[f"{span['name']}_at"].item()
        assert int(span["endTimeUnixNano"]) == int(at.timestamp() * 1_000_000) * 1000
    runs = {
        a["value"]["stringValue"] for s in stages for a in s["attributes"] if "run_id" in a["key"]
    }
    assert runs == {"run-1"}  # absent run ids are left out, not written as null


def test_large_days_are_sampled_consistently_by_trace_id(tmp_path) -> None:
    # A day ten times the trace budget: the sample ratio is 0.1, its size about 100 (+-40%).
    cases = _traced_cases(1_000)
    every = _trace_lines(cases, tmp_path / "all.jsonl", max_traces=None)
    small = _trace_lines(cases, tmp_path / "small.jsonl", max_traces=100)
    again = _trace_lines(cases, tmp_path / "again.jsonl", max_traces=100)
    larger = _trace_lines(cases, tmp_path / "larger.jsonl", max_traces=300)
    assert len(every) == 1_000
    assert 60 < len(small) < 140 and small == again
    ratio = small[0]["resourceSpans"][0]["resource"]["attributes"][-1]["value"]["stringValue"]
    assert float(ratio) == pytest.approx(0.1)
    trace_ids = [{_spans(x)[0]["traceId"] for x in lines} for lines in (small, larger, every)]
    assert trace_ids[0] < trace_ids[1] < trace_ids[2]  # a sample is a prefix of the id space
    full = {_spans(x)[0]["traceId"]: _spans(x) for x in every}
    assert all(_spans(x) == full[_spans(x)[0]["traceId"]] for x in small)


@pytest.mark.parametrize("batch_rows", [7, 50_000])  # a query per day, one for all days
def test_a_run_of_days_writes_each_day_the_lines_of_that_day_alone(
    tmp_path, monkeypatch, batch_rows: int
) -> None:
    """One query for all the days gives each day's file exactly what the day alone gives: a
    sampled day, a small one, one without cases (an empty file) and another domain's cases
    on the same day, read across Arrow batch boundaries."""
    import duckdb

    monkeypatch.setattr(traces, "BATCH_ROWS", batch_rows)
    big, small, empty = DAYS[-3], DAYS[-2], DAYS[-1]
    rng = np.random.default_rng(9)
    frames = [_day_cases(rng, big, 1_500), _day_cases(rng, small, 40)]
    other = _day_cases(rng, small, 5).with_columns(pl.lit("e").alias("domain"))
    cases = pl.concat([*frames, other]).with_columns(
        pl.lit("run-1").alias("decision_run_id"),
        pl.lit("run-1").alias("validation_run_id"),
        pl.lit(None, pl.String).alias("export_run_id"),
        pl.lit(None, pl.String).alias("verdict_run_id"),
        pl.lit("run-1").alias("execution_run_id"),
    )
    con = duckdb.connect()
    con.register("incoming", cases.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming").fetchall()
    together = write_traces(con, "d", tmp_path / "run", [big, small, empty], 200)
    assert [t.path.name for t in together] == [f"{d}.jsonl" for d in (big, small, empty)]
    for day, written in zip((big, small, empty), together, strict=True):
        alone = write_day_traces(con, "d", day, tmp_path / f"alone-{day}.jsonl", 200)
        assert written.path.read_bytes() == alone.path.read_bytes()
        assert (written.traces, written.sample_ratio) == (alone.traces, alone.sample_ratio)
        lines = [json.loads(x) for x in written.path.read_text(encoding="utf-8").splitlines()]
        assert len(lines) == written.traces
        assert {_spans(x)[0]["attributes"][2]["value"]["stringValue"] for x in lines} <= {
            day.isoformat()
        }
    assert together[0].sample_ratio < 1 and 100 < together[0].traces < 300
    assert together[1].traces == 40 and together[2].traces == 0
    assert together[2].path.read_bytes() == b""


def test_given_counts_are_what_the_days_are_sampled_by(tmp_path) -> None:
    """Counts passed in (the facts') replace the view's count: the same counts give the same
    file byte for byte, twice the count half the ratio."""
    import duckdb

    cases = _traced_cases(400)
    con = duckdb.connect()
    con.register("incoming", cases.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming").fetchall()
    counted = write_traces(con, "d", tmp_path / "counted", [LAST], 100)[0]
    given = write_traces(con, "d", tmp_path / "given", [LAST], 100, {LAST: 400})[0]
    doubled = write_traces(con, "d", tmp_path / "doubled", [LAST], 100, {LAST: 800})[0]
    assert given.path.read_bytes() == counted.path.read_bytes()
    assert (given.traces, given.sample_ratio) == (counted.traces, 0.25)
    assert doubled.sample_ratio == 0.125 and doubled.traces < given.traces


def test_days_are_queried_together_up_to_a_bounded_number_of_lines(monkeypatch) -> None:
    monkeypatch.setattr(traces, "BATCH_ROWS", 250)
    days = DAYS[:6]
    counts = {DAYS[0]: 100, DAYS[1]: 100, DAYS[2]: 100, DAYS[3]: 5_000, DAYS[5]: 100}
    ratios = {d: 0.02 if d == DAYS[3] else 1.0 for d in days}
    groups = traces._day_groups(days, counts, ratios)
    assert groups == [DAYS[:2], DAYS[2:5], DAYS[5:6]]  # by expected lines, not cases


def test_qa_sample_gives_an_error_estimate_of_automation_per_day() -> None:
    """QA-sampled automatic cases with verdicts: error rate and Wilson bounds; blanks ignored."""
    from datetime import date

    from hitl_gate.observability.metrics import qa_error_estimates

    day = date(2018, 1, 5)
    qa = pl.DataFrame(
        {
            "partition_date": [day] * 12,
            "proposed_route": ["auto_approve"] * 10 + ["auto_decline"] * 2,
            "qa_probability": [0.1] * 12,
            "verdict": ["approve"] * 8 + ["decline"] * 2 + ["decline", None],
        }
    )
    (rows,) = qa_error_estimates(qa)
    value = {(r["metric"], r["key"]): r["value"] for r in rows.iter_rows(named=True)}
    assert value[("qa_reviewed", "auto_approve")] == 10
    assert value[("qa_error_rate", "auto_approve")] == pytest.approx(0.2)
    assert value[("qa_error_low", "auto_approve")] < 0.2 < value[("qa_error_high", "auto_approve")]
    assert value[("qa_reviewed", "auto_decline")] == 1  # the unreviewed case is not counted
    assert value[("qa_error_rate", "auto_decline")] == 0.0
    assert value[("qa_error_rate", "all")] == pytest.approx(2 / 11)
    assert qa_error_estimates(qa.head(0)) == []

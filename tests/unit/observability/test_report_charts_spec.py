"""The report's charts as plain Plotly specifications: the same figures the `graph_objects`
code drew (`report_charts_golden.json`, written by that code at 2eed2de from the frame below),
and nothing Plotly's validation would change or reject."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import pytest
from plotly.io.json import to_json_plotly

from hitl_gate.core.lawful import FairnessLimits
from hitl_gate.observability.anomalies import Finding, Thresholds
from hitl_gate.observability.report import render_report
from hitl_gate.observability.report_charts import Chart, build_charts

FIRST_DAY = date(2024, 3, 1)
GOLDEN = json.loads((Path(__file__).parent / "report_charts_golden.json").read_text())
SCHEMA = {"partition_date": pl.Date, "metric": pl.String, "dimension": pl.String,
          "key": pl.String, "value": pl.Float64}  # fmt: skip
AIR = (("sex", "F", "final_action", 0.71), ("sex", "F", "model_band", 0.93),
       ("sex", "F", "human_verdict", 0.85), ("sex", "M", "final_action", 1.0),
       ("age_band", "<25", "policy_route", 0.64), ("age_band", "<25", "other", 0.9))  # fmt: skip


def sample_metrics(days: int) -> pl.DataFrame:
    """Every metric a chart draws, a little different each day (medians, maxima, means)."""
    rows: list[tuple[date, str, str, str, float]] = []
    for i in range(days):
        day = FIRST_DAY + timedelta(days=i)
        for route, n in (("auto_approve", 61 + i), ("human_review", 27), ("decline", 12 - i)):
            rows += [(day, "cases", "route", route, float(n)),
                     (day, "rate", "route", route, n / 100)]  # fmt: skip
        rows.append((day, "rate", "final_action", "approve", 0.625 + i / 50))
        for stage, p50 in (("landing", 0.5), ("routing", 1.25), ("execution", 2.0)):
            rows += [(day, "stage_latency_p50_s", "stage", stage, p50 + i),
                     (day, "stage_latency_p95_s", "stage", stage, 3 * p50 + i),
                     (day, "stage_latency_p99_s", "stage", stage, 9 * p50)]  # fmt: skip
        for key, base in (("auto_approve", 4.0), ("human_review", 3600.0)):
            rows += [(day, "time_to_decision_p50_s", "route", key, base + i),
                     (day, "time_to_decision_max_s", "route", key, 2 * base + i)]  # fmt: skip
        rows += [
            (day, "reviewed", "reviewer", "ana", 30.0 + i),
            (day, "overrides", "reviewer", "ana", 3.0),
            (day, "reviewed", "reviewer", "bo", 7.0),
            (day, "queue_depth", "queue", "senior", 5.0 + i),
            (day, "sla_breaches", "queue", "senior", float(i)),
            (day, "queue_depth", "queue", "junior", 2.0),
        ]
        rows += [(day, "fairness_air", f"{a}@{stage}", key, air + i / 100)
                 for a, key, stage, air in AIR]  # fmt: skip
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def drift_finding() -> Finding:
    details = pl.DataFrame(
        {"feature": ["income", "income", "age", "debt"], "psi": [0.31, 0.12, 0.05, 0.2],
         "noise_floor": [0.01, 0.01, 0.02, 0.03]}
    )  # fmt: skip
    return Finding("feature_drift_psi", False, "ERROR", "drift", details)


def charts(days: int) -> list[Chart]:
    findings = [drift_finding()] if days > 1 else []
    span = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    return build_charts(sample_metrics(days), findings, span, Thresholds(), FairnessLimits())


def as_json(spec: object) -> object:
    """`spec` as the report's page holds it (dates as ISO text, tuples as lists)."""
    return json.loads(to_json_plotly(spec))


@pytest.mark.parametrize(("scenario", "days"), [("three_days", 3), ("one_day", 1)])
def test_the_specifications_draw_what_the_graph_objects_code_drew(scenario, days) -> None:
    drawn = []
    for chart in charts(days):
        spec = None
        if chart.spec is not None:
            spec = as_json(chart.spec)
            assert spec["layout"].pop("template") == as_json(go.Figure().layout.template)
        drawn.append({"title": chart.title, "empty_reason": chart.empty_reason, "spec": spec})
    assert drawn == GOLDEN[scenario]
    assert sum(c["spec"] is not None for c in drawn) >= 6  # the frame draws, not explains


def test_plotly_validation_would_change_nothing_in_a_specification() -> None:
    specs = [c.spec for c in charts(3) if c.spec is not None]
    assert len(specs) == 8
    for spec in specs:
        assert as_json(go.Figure(spec).to_plotly_json()) == as_json(spec)


def test_the_page_plots_each_specification_with_its_data() -> None:
    days = [FIRST_DAY + timedelta(days=i) for i in range(3)]
    document = render_report(
        domain="d", run_id="r", days=days, as_of=datetime(2024, 3, 4, tzinfo=UTC),
        metrics=sample_metrics(3), findings=[drift_finding()], links={},
    )  # fmt: skip
    body = document.split("</head>", 1)[1]
    assert body.count("Plotly.newPlot(") == 8
    assert '"x":["model_band","human_verdict","final_action"]' in body and '"sex=F"' in body
    assert '"text":"automation-bias floor 1%"' in body and '"template":{"data"' in body

"""The operations report on small frames: run and period views, thresholds on the charts,
empty charts explained in words, one-day axes, and "not judged" for checks that saw nothing."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from hitl_gate.core.lawful import FairnessLimits
from hitl_gate.observability.anomalies import (
    NOT_JUDGED,
    Thresholds,
    automation_bias,
    distribution_drift,
    proportion_shift_counts,
    sla_breaches,
    value_counts,
    volume_drop,
)
from hitl_gate.observability.report import PERIOD, render_report, write_report
from hitl_gate.observability.report_charts import DAY_BAR_WIDTH, build_charts, date_axis

DAY = date(2024, 3, 1)
AS_OF = datetime(2024, 3, 2, tzinfo=UTC)
T = Thresholds()


def metrics_frame(days: list[date]) -> pl.DataFrame:
    """Long metrics rows: cases and shares per route, a reviewer's overrides, one group's AIR."""
    rows = []
    for day in days:
        for route, n in (("auto_approve", 60), ("human_review", 40)):
            rows += [
                (day, "cases", "route", route, float(n)),
                (day, "rate", "route", route, n / 100),
            ]
        rows += [
            (day, "reviewed", "reviewer", "ana", 30.0),
            (day, "overrides", "reviewer", "ana", 3.0),
            (day, "fairness_air", "sex@final_action", "F", 0.7),
        ]
    return pl.DataFrame(rows, schema=METRICS_SCHEMA, orient="row")


METRICS_SCHEMA = {
    "partition_date": pl.Date, "metric": pl.String, "dimension": pl.String, "key": pl.String,
    "value": pl.Float64,
}  # fmt: skip


def empty_metrics() -> pl.DataFrame:
    return pl.DataFrame(schema=METRICS_SCHEMA)


def test_checks_with_nothing_to_compare_say_not_judged_not_passed() -> None:
    cases = pl.DataFrame(
        {"partition_date": [DAY] * 5, "route": ["auto_approve"] * 5, "pd": [0.1] * 5}
    )
    no_history = [
        proportion_shift_counts(
            value_counts(cases, "route"), "route", [DAY], T, check="route_mix_shift"
        ),
        distribution_drift(cases, ["pd"], [DAY], T, check="score_drift_psi"),
        volume_drop(cases.group_by("partition_date").len("cases"), [DAY], T),
        automation_bias(
            pl.DataFrame(
                {
                    "reviewer_id": ["ana"] * 3,
                    "override": [False] * 3,
                    "review_seconds_per_case": [1.0] * 3,
                }
            ),
            T,
        ),  # fmt: skip
        sla_breaches(
            pl.DataFrame(
                schema={
                    "batch_queue": pl.String,
                    "due_at": pl.Datetime("us", "UTC"),
                    "verdict_received_at": pl.Datetime("us", "UTC"),
                    "case_id": pl.String,
                }
            ),
            AS_OF,
            T,
        ),  # fmt: skip
    ]
    for finding in no_history:
        assert finding.passed and not finding.judged, finding.check
        assert finding.state == NOT_JUDGED and "not judged" in finding.describe()
    document = render_report(
        domain="d", run_id="r", days=[DAY], as_of=AS_OF, metrics=empty_metrics(),
        findings=no_history, links={},
    )  # fmt: skip
    assert document.count("<td>not judged</td>") == len(no_history)
    assert "<td>passed</td>" not in document


def test_a_check_that_judged_says_passed_and_a_failure_stays_a_failure() -> None:
    three_reviewers_fast = pl.DataFrame(
        {"reviewer_id": ["ana"] * 25, "override": [False] * 25,
         "review_seconds_per_case": [1.0] * 25}
    )  # fmt: skip
    failed = automation_bias(three_reviewers_fast, T)
    assert not failed.passed and failed.judged and failed.state == "FAILED (WARN)"
    careful = three_reviewers_fast.with_columns(
        pl.lit(60.0).alias("review_seconds_per_case"),
        (pl.int_range(25) % 5 == 0).alias("override"),
    )
    passed = automation_bias(careful, T)
    assert passed.passed and passed.judged and passed.state == "passed"


def test_empty_charts_are_explained_in_words_not_drawn_as_blank_axes() -> None:
    charts = build_charts(empty_metrics(), [], [DAY], T, FairnessLimits())
    assert charts and all(c.figure is None and c.empty_reason for c in charts)
    document = render_report(
        domain="d", run_id="r", days=[DAY], as_of=AS_OF, metrics=empty_metrics(),
        findings=[], links={},
    )  # fmt: skip
    body = document.split("</head>", 1)[1]  # plotly.js itself names its classes in the head
    assert "plotly-graph-div" not in body and "Plotly.newPlot" not in body
    assert document.count("class='chart empty'") == len(charts)
    assert "No case was decided on these days." in document
    assert "Not judged: no day had 3+ earlier days" in document


def test_thresholds_are_drawn_on_the_charts_they_judge() -> None:
    limits = FairnessLimits(warn_ratio=0.8, block_ratio=0.6)
    charts = {c.title: c for c in build_charts(metrics_frame([DAY]), [], [DAY], T, limits)}
    air = charts[next(t for t in charts if t.startswith("Adverse impact ratio"))].figure
    assert sorted(shape.y0 for shape in air.layout.shapes) == [0.6, 0.8]
    overrides = charts[next(t for t in charts if t.startswith("Override rate"))].figure
    assert [shape.y0 for shape in overrides.layout.shapes] == [T.bias_max_override_rate]
    assert overrides.data[0].y == pytest.approx((0.1,))


def test_a_one_day_axis_shows_that_day_not_hours_of_an_empty_timeline() -> None:
    axis = date_axis([DAY])
    first, last = axis["range"]
    assert last - first == timedelta(days=1) and axis["dtick"] == 86_400_000
    assert axis["tickformat"] == "%Y-%m-%d"
    long = date_axis([DAY, DAY + timedelta(days=60)])
    assert "dtick" not in long  # Plotly picks ticks for a long period
    cases = build_charts(metrics_frame([DAY]), [], [DAY], T, FairnessLimits())[0].figure
    assert cases.layout.xaxis.dtick == 86_400_000
    assert all(bar.width == DAY_BAR_WIDTH for bar in cases.data)  # a day wide, not a hairline


def test_the_period_view_and_the_run_view_link_each_other(tmp_path) -> None:
    days = [DAY + timedelta(days=i) for i in range(10)]
    common = {"domain": "d", "run_id": "r1", "as_of": AS_OF, "findings": [], "links": {}}
    run = render_report(days=days[-1:], metrics=metrics_frame(days[-1:]), **common)
    period = render_report(days=days, metrics=metrics_frame(days), view=PERIOD, **common)
    assert "Operations report: d" in run and "href='period.html'" in run
    assert "Operations over a period: d" in period and "href='latest.html'" in period
    assert "2024-03-01 to 2024-03-10 (10 days" in period
    assert re.search(r"<script[^>]*\bsrc=", period) is None  # plotly.js inline, no CDN
    written = write_report(tmp_path, "r1", run, period)
    assert written.read_text() == (tmp_path / "latest.html").read_text() == run
    assert (tmp_path / "period.html").read_text() == period

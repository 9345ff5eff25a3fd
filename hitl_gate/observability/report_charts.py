"""The charts of the operations report: one Plotly figure per question, or words saying why not.

Each chart answers one operational question over the report's days. A chart with no data is
kept, as a sentence saying what is missing and why (a blank pair of axes reads as a broken
page); the thresholds the checks use are drawn on the charts they apply to; a date axis over
one day shows that day, not hours of an empty timeline.

A figure is built as the plain specification Plotly's `Figure.to_plotly_json` gives (dicts and
lists, the default template included), not as `graph_objects`: those validate every property
on construction and again on each `update_layout`/`add_hline`, which was most of the report's
CPU (`tests/unit/observability/test_report_charts_spec.py` pins the specification to what the
`graph_objects` code drew and to what Plotly's validation makes of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any

import polars as pl

from hitl_gate.core.lawful import FairnessLimits
from hitl_gate.observability.anomalies import Finding, Thresholds

DAY_MS = 86_400_000  # a day in the milliseconds a Plotly date axis counts in
# A daily bar's width on a date axis: without it Plotly draws one day's bar a hairline wide.
DAY_BAR_WIDTH = DAY_MS * 0.8
STAGE_ORDER = {"model_band": 0, "policy_route": 1, "human_verdict": 2, "final_action": 3}
WARN_COLOUR, ERROR_COLOUR = "#b36b00", "#b00020"  # amber: a warning line; red: a failing one


Spec = dict[str, Any]  # a Plotly figure, trace, shape or annotation as plain JSON-able values


@dataclass(frozen=True)
class Chart:
    """A titled chart: a Plotly figure specification, or (`spec` None) the reason it has
    nothing to show."""

    title: str
    spec: Spec | None
    empty_reason: str = ""

    @property
    def figure(self) -> Any | None:
        """`spec` as a validated Plotly `Figure`, for inspecting it; the report renders `spec`
        itself, unvalidated (validation is what a figure costs)."""
        if self.spec is None:
            return None
        import plotly.graph_objects as go

        return go.Figure(self.spec)


@cache
def _template() -> Spec:
    """Plotly's default template as a specification: what `go.Figure` puts in every layout
    (the report's look: grid, colours, fonts), built once per process."""
    import plotly.io as pio

    return pio.templates[pio.templates.default].to_plotly_json()


def _trace(kind: str, x: list, y: list, **properties: object) -> Spec:
    return {"type": kind, "x": x, "y": y, **properties}


def _line(label: str, value: float, colour: str, *, vertical: bool) -> tuple[Spec, Spec]:
    """A dashed threshold line across the plot and its label, as `add_vline` (labelled top
    right) and `add_hline` (labelled top left) make them."""
    if vertical:
        at = {"xref": "x", "yref": "y domain"}
        shape = {"x0": value, "x1": value, "y0": 0, "y1": 1}
        label_at = {"x": value, "y": 1, "yanchor": "top"}
    else:
        at = {"xref": "x domain", "yref": "y"}
        shape = {"x0": 0, "x1": 1, "y0": value, "y1": value}
        label_at = {"x": 0, "y": value, "yanchor": "bottom"}
    line = {"type": "line", "line": {"color": colour, "dash": "dash"}, **shape, **at}
    note = {"showarrow": False, "text": label, "xanchor": "left", **label_at, **at}
    return line, note


def _series(metrics: pl.DataFrame, metric: str, dimension: str) -> pl.DataFrame:
    return metrics.filter((pl.col("metric") == metric) & (pl.col("dimension") == dimension))


def _summed(metrics: pl.DataFrame, metric: str, dimension: str) -> pl.DataFrame:
    """A count metric summed over the report's days, per key."""
    return (
        _series(metrics, metric, dimension).group_by("key").agg(pl.col("value").sum()).sort("key")
    )


def date_axis(days: Sequence[date]) -> dict[str, object]:
    """A date axis spanning `days` with half a day either side, ticked per day when short.

    Plotly stretches a single date over hours of an empty axis (the one-day report showed
    "12:00, 18:00" ticks around one bar); a fixed range and daily ticks avoid that.
    """
    if not days:
        return {"type": "date"}
    first, last = min(days), max(days)
    axis: dict[str, object] = {
        "type": "date",
        "tickformat": "%Y-%m-%d",
        "range": [
            datetime.combine(first, time()) - timedelta(hours=12),
            datetime.combine(last, time()) + timedelta(hours=12),
        ],
    }
    if (last - first).days <= 14:
        axis["dtick"] = DAY_MS
    return axis


class _Charts:
    """Collects the report's charts in order, laying each figure out the same way."""

    def __init__(self) -> None:
        self.charts: list[Chart] = []

    def add(
        self,
        title: str,
        traces: list[Spec],
        empty_reason: str,
        *,
        lines: Sequence[tuple[str, float, str]] = (),
        vertical: bool = False,
        **layout: object,
    ) -> None:
        """A chart of `traces` with threshold `lines` (label, value, colour), or its reason."""
        if not any(t["x"] for t in traces):
            self.charts.append(Chart(title, None, empty_reason))
            return
        spec: Spec = {
            "template": _template(),
            "height": 340,
            "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
            **layout,
        }
        if lines:
            drawn = [_line(*line, vertical=vertical) for line in lines]
            spec["shapes"] = [shape for shape, _ in drawn]
            spec["annotations"] = [note for _, note in drawn]
        self.charts.append(Chart(title, {"data": traces, "layout": spec}))

    def add_grouped(
        self, title: str, frame: pl.DataFrame, empty_reason: str, *, series: str, x: str
    ) -> None:
        """Bars of `frame`'s `value` side by side: one trace per `series` value, over `x`."""
        self.add(
            title,
            [
                _trace("bar", part[x].to_list(), part["value"].to_list(), name=name)
                for (name,), part in frame.sort(x, series).group_by(series, maintain_order=True)
            ],
            empty_reason,
            barmode="group",
        )


def _limit_lines(warn: float, word: str, limit: float) -> list[tuple[str, float, str]]:
    """The dashed lines of a check's two thresholds: where it warns and where it fails (`word`
    names that, e.g. error or block); one line where the two coincide."""
    lines = [(f"warn {warn:g}", warn, WARN_COLOUR)]
    if limit != warn:
        lines.append((f"{word} {limit:g}", limit, ERROR_COLOUR))
    return lines


def build_charts(
    metrics: pl.DataFrame,
    findings: Sequence[Finding],
    days: Sequence[date],
    thresholds: Thresholds,
    fairness: FairnessLimits,
) -> list[Chart]:
    """Every chart of the report over `days`, in reading order."""
    out = _Charts()
    x_axis = date_axis(days)
    routes = _series(metrics, "cases", "route").sort("partition_date")
    out.add(
        "Cases per day by route",
        [
            _trace(
                "bar",
                part["partition_date"].to_list(),
                part["value"].to_list(),
                name=key,
                width=DAY_BAR_WIDTH,
            )
            for (key,), part in routes.group_by("key", maintain_order=True)
        ],
        "No case was decided on these days.",
        barmode="stack",
        xaxis=x_axis,
    )
    rates = pl.concat(
        [_series(metrics, "rate", "route"), _series(metrics, "rate", "final_action")]
    ).sort("partition_date")
    out.add(
        "Route shares and final approval rate per day",
        [
            _trace(
                "scatter",
                part["partition_date"].to_list(),
                part["value"].to_list(),
                name=f"{dim}: {key}",
                mode="lines+markers",
            )
            for (dim, key), part in rates.group_by("dimension", "key", maintain_order=True)
        ],  # fmt: skip
        "No case was decided on these days, so there are no shares.",
        yaxis={"tickformat": ".0%", "range": [0, 1.02]},  # shares: the whole scale, always
        xaxis=x_axis,
    )
    _latency_charts(out, metrics)
    _review_charts(out, metrics, thresholds)
    _drift_chart(out, findings, thresholds)
    _fairness_chart(out, metrics, fairness)
    return out.charts


def _latency_charts(out: _Charts, metrics: pl.DataFrame) -> None:
    latency = (
        _over_days(metrics, "stage_latency_", pl.col("value").median())
        .filter(pl.col("metric").is_in(["stage_latency_p50_s", "stage_latency_p95_s"]))
        .with_columns(pl.col("metric").str.strip_prefix("stage_latency_").str.strip_suffix("_s"))
    )
    out.add_grouped(
        "Stage latency (median over days of the daily p50 / p95, seconds)",
        latency,
        "No stage times recorded for these days (the runs' event logs held none).",
        series="metric",
        x="key",
    )
    out.add_grouped(
        "Time to decision, ingestion to execution (worst day, seconds)",
        _over_days(metrics, "time_to_decision_", pl.col("value").max()),
        "No case was executed on these days: nothing has a time to decision yet.",
        series="key",
        x="metric",
    )


def _over_days(metrics: pl.DataFrame, prefix: str, how: pl.Expr) -> pl.DataFrame:
    """The metrics named `prefix...`, one `value` per metric and key: `how` over the days."""
    return (
        metrics.filter(pl.col("metric").str.starts_with(prefix)).group_by("metric", "key").agg(how)
    )


def _review_charts(out: _Charts, metrics: pl.DataFrame, t: Thresholds) -> None:
    reviewed = _summed(metrics, "reviewed", "reviewer")
    overrides = _summed(metrics, "overrides", "reviewer")
    joined = reviewed.join(overrides, on="key", how="left", suffix="_o").with_columns(
        (pl.col("value_o").fill_null(0) / pl.col("value")).alias("rate")
    )
    out.add(
        "Override rate per reviewer (verdict differs from the band's proposed action)",
        [_trace("bar", joined["key"].to_list(), joined["rate"].to_list(),
                text=[f"{int(n)} verdicts" for n in joined["value"]])],
        "No verdict was returned for these days: no reviewer to chart.",
        lines=[(f"automation-bias floor {t.bias_max_override_rate:.0%}",
                t.bias_max_override_rate, WARN_COLOUR)],
        yaxis={"tickformat": ".0%"},
    )  # fmt: skip
    queues = pl.concat(
        [_series(metrics, m, "queue") for m in ("queue_depth", "sla_breaches")]
    ).filter(pl.col("partition_date") == pl.col("partition_date").max())
    out.add_grouped(
        "Review queues on the last day: open cases and SLA breaches",
        queues,
        "No review queue had a case on the last day.",
        series="metric",
        x="key",
    )


def _drift_chart(out: _Charts, findings: Sequence[Finding], t: Thresholds) -> None:
    drift = next((f for f in findings if f.check == "feature_drift_psi"), None)
    worst = pl.DataFrame(schema={"feature": pl.String, "excess": pl.Float64})
    if drift is not None and {"psi", "noise_floor"} <= set(drift.details.columns):
        worst = (
            drift.details.group_by("feature")
            .agg((pl.col("psi") - pl.col("noise_floor")).max().alias("excess"))
            .sort("excess")
        )
    out.add(
        "Feature drift: largest daily PSI above its noise floor, per feature",
        [_trace("bar", worst["excess"].to_list(), worst["feature"].to_list(), orientation="h")],
        f"Not judged: no day had {t.min_baseline_days}+ earlier days within "
        f"{t.baseline_days} days to compare with (a report's first days have no baseline).",
        lines=_limit_lines(t.psi_warn, "error", t.psi_error),
        vertical=True,
    )  # fmt: skip


def _fairness_chart(out: _Charts, metrics: pl.DataFrame, limits: FairnessLimits) -> None:
    """The daily AIR averaged over the days; the check itself judges the cases together."""
    air = (
        metrics.filter(pl.col("metric") == "fairness_air")
        .with_columns(pl.col("dimension").str.split_exact("@", 1).alias("parts"))
        .unnest("parts")
        .rename({"field_0": "attribute", "field_1": "stage"})
        .group_by("attribute", "key", "stage")
        .agg(pl.col("value").mean())
        .sort(  # one sort for every group: its bars in pipeline order
            "attribute", "key", pl.col("stage").replace_strict(STAGE_ORDER, default=9), "stage"
        )
    )
    traces = [
        _trace("bar", part["stage"].to_list(), part["value"].to_list(),
               name=f"{attribute}={key}")
        for (attribute, key), part in air.group_by("attribute", "key", maintain_order=True)
    ]  # fmt: skip
    out.add(
        "Adverse impact ratio per protected group and stage (1 = parity, < 0.8 four-fifths rule)",
        traces,
        "Nothing measured: the domain declares no protected attribute, or no case was decided.",
        lines=_limit_lines(limits.warn_ratio, "block", limits.block_ratio),
        barmode="group",
        showlegend=True,  # the group's name, even when there is only one
    )

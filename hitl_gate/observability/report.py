"""The static HTML operations report of one run: Plotly charts of the metrics and the checks.

One self-contained file (plotly.js embedded once, inline: no CDN, opens offline and from an
archive years later). Written by the `decision_metrics` asset under `<home>/reports/<domain>/`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from hitl_gate.observability.anomalies import Finding


def _series(metrics: pl.DataFrame, metric: str, dimension: str) -> pl.DataFrame:
    return metrics.filter((pl.col("metric") == metric) & (pl.col("dimension") == dimension))


def _summed(metrics: pl.DataFrame, metric: str, dimension: str) -> pl.DataFrame:
    """A count metric summed over the run's days, per key."""
    return (
        _series(metrics, metric, dimension).group_by("key").agg(pl.col("value").sum()).sort("key")
    )


def _figures(metrics: pl.DataFrame, findings: Sequence[Finding]) -> list[tuple[str, Any]]:
    """(title, plotly figure) pairs; a chart whose data is absent is left out."""
    import plotly.graph_objects as go

    figures: list[tuple[str, object]] = []

    def add(title: str, traces: list, **layout: object) -> None:
        if traces:
            fig = go.Figure(traces)
            fig.update_layout(height=340, margin={"l": 50, "r": 20, "t": 30, "b": 40}, **layout)
            figures.append((title, fig))

    routes = _series(metrics, "cases", "route").sort("partition_date")
    add(
        "Cases per day by route",
        [
            go.Bar(name=key, x=part["partition_date"].to_list(), y=part["value"].to_list())
            for (key,), part in routes.group_by("key", maintain_order=True)
        ],
        barmode="stack",
    )
    rates = pl.concat(
        [_series(metrics, "rate", "route"), _series(metrics, "rate", "final_action")]
    ).sort("partition_date")
    add(
        "Route shares and final approval rate per day",
        [
            go.Scatter(
                name=f"{dim}: {key}",
                x=part["partition_date"].to_list(),
                y=part["value"].to_list(),
                mode="lines+markers",
            )
            for (dim, key), part in rates.group_by("dimension", "key", maintain_order=True)
        ],  # fmt: skip
        yaxis={"tickformat": ".0%"},
    )
    latency = (
        metrics.filter(pl.col("metric").str.starts_with("stage_latency_"))
        .group_by("metric", "key")
        .agg(pl.col("value").median())
    )
    add(
        "Stage latency (median over days of the daily p50 / p95, seconds)",
        [
            go.Bar(
                name=m.removeprefix("stage_latency_").removesuffix("_s"),
                x=part["key"].to_list(),
                y=part["value"].to_list(),
            )
            for m in ("stage_latency_p50_s", "stage_latency_p95_s")
            if (part := latency.filter(pl.col("metric") == m).sort("key")).height
        ],  # fmt: skip
        barmode="group",
    )
    ttd = (
        metrics.filter(pl.col("metric").str.starts_with("time_to_decision_"))
        .group_by("metric", "key")
        .agg(pl.col("value").max())
    )
    add(
        "Time to decision, ingestion to execution (worst day, seconds)",
        [
            go.Bar(name=key, x=part["metric"].to_list(), y=part["value"].to_list())
            for (key,), part in ttd.sort("metric").group_by("key", maintain_order=True)
        ],
        barmode="group",
    )
    reviewed = _summed(metrics, "reviewed", "reviewer")
    overrides = _summed(metrics, "overrides", "reviewer")
    if reviewed.height:
        joined = reviewed.join(overrides, on="key", suffix="_o").with_columns(
            (pl.col("value_o") / pl.col("value")).alias("rate")
        )
        add(
            "Override rate per reviewer (verdict differs from the band's proposed action)",
            [go.Bar(x=joined["key"].to_list(), y=joined["rate"].to_list(),
                    text=[f"{int(n)} verdicts" for n in joined["value"]])],
            yaxis={"tickformat": ".0%"},
        )  # fmt: skip
    queues = pl.concat(
        [_series(metrics, m, "queue") for m in ("queue_depth", "sla_breaches")]
    ).filter(pl.col("partition_date") == pl.col("partition_date").max())
    add(
        "Review queues on the last day of the run: open cases and SLA breaches",
        [
            go.Bar(name=m, x=part["key"].to_list(), y=part["value"].to_list())
            for (m,), part in queues.sort("key").group_by("metric", maintain_order=True)
        ],
        barmode="group",
    )
    drift = next((f for f in findings if f.check == "feature_drift_psi"), None)
    if drift is not None and "psi" in drift.details.columns and drift.details.height:
        worst = drift.details.group_by("feature").agg(pl.col("psi").max()).sort("psi")
        add(
            "Feature drift: largest daily PSI per feature",
            [go.Bar(x=worst["psi"].to_list(), y=worst["feature"].to_list(), orientation="h")],
        )
    # Fairness (hitl_gate/observability/fairness.py): the daily AIR averaged over the run's days;
    # the check itself judges the run's cases together, with confidence intervals.
    air = (
        metrics.filter(pl.col("metric") == "fairness_air")
        .with_columns(pl.col("dimension").str.split_exact("@", 1).alias("parts"))
        .unnest("parts")
        .rename({"field_0": "attribute", "field_1": "stage"})
        .group_by("attribute", "key", "stage")
        .agg(pl.col("value").mean())
    )
    stage_order = {"model_band": 0, "policy_route": 1, "human_verdict": 2, "final_action": 3}
    add(
        "Adverse impact ratio per protected group and stage (1 = parity, < 0.8 four-fifths rule)",
        [
            go.Bar(
                name=f"{attribute}={key}",
                x=(ordered := part.sort(pl.col("stage").replace_strict(stage_order)))[
                    "stage"
                ].to_list(),
                y=ordered["value"].to_list(),
            )
            for (attribute, key), part in air.sort("attribute", "key").group_by(
                "attribute", "key", maintain_order=True
            )
        ],
        barmode="group",
    )
    return figures


def _checks_table(findings: Sequence[Finding]) -> str:
    rows = "".join(
        f"<tr class='{'ok' if f.passed else f.severity.lower()}'><td>{html.escape(f.check)}</td>"
        f"<td>{'passed' if f.passed else 'FAILED ' + f.severity}</td>"
        f"<td>{html.escape(f.summary)}</td></tr>"
        for f in findings
    )
    return f"<table><tr><th>check</th><th>result</th><th>what was compared</th></tr>{rows}</table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}tr.ok td:nth-child(2){color:#2a7a2a}
tr.warn td:nth-child(2){color:#b36b00;font-weight:bold}
tr.error td:nth-child(2){color:#b00020;font-weight:bold}.chart{margin:1.5em 0}
"""


def render_report(
    *,
    domain: str,
    run_id: str,
    days: Sequence,
    as_of: datetime,
    metrics: pl.DataFrame,
    findings: Sequence[Finding],
    links: dict[str, str],
) -> str:
    """The report as one HTML document."""
    from plotly.offline import get_plotlyjs

    charts = "".join(
        f"<div class='chart'><h3>{html.escape(title)}</h3>"
        f"{fig.to_html(full_html=False, include_plotlyjs=False)}</div>"
        for title, fig in _figures(metrics, findings)
    )
    link_items = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>" for k, v in links.items()
    )
    span = f"{days[0]} to {days[-1]}" if len(days) > 1 else str(days[0])
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>hitl-gate operations report: {html.escape(domain)} {span}</title>"
        f"<style>{STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script>"
        "</head><body>"
        f"<h1>Operations report: {html.escape(domain)}</h1>"
        f"<p>Days {span}; run <code>{html.escape(run_id)}</code>; as of "
        f"{as_of:%Y-%m-%d %H:%M:%S} UTC.</p>"
        f"<h2>Checks</h2>{_checks_table(findings)}<h2>Charts</h2>{charts}"
        f"<h2>Where things are</h2><ul>{link_items}</ul></body></html>"
    )


def write_report(folder: Path, run_id: str, document: str) -> Path:
    """`<folder>/<run_id>.html`, and `latest.html` pointing at the same content."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{run_id}.html"
    target.write_text(document, encoding="utf-8")
    (folder / "latest.html").write_text(document, encoding="utf-8")
    return target

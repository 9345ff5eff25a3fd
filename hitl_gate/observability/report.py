"""The static HTML operations reports: Plotly charts of the metrics and the checks.

Two views, each one self-contained file (plotly.js embedded once, inline: no CDN, opens offline
and from an archive years later), written by the `decision_metrics` asset under
`<home>/reports/<domain>/`: the run's days (`<run id>.html`, copied to `latest.html`), and the
period up to the run's last day as stored in the audit database (`period.html`). Checks show
passed, FAILED or "not judged" (nothing to compare); the charts are in `report_charts.py`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from pathlib import Path

import polars as pl

from hitl_gate.core.lawful import FairnessLimits
from hitl_gate.observability.anomalies import Finding, Thresholds
from hitl_gate.observability.report_charts import Chart, build_charts


def _checks_table(findings: Sequence[Finding]) -> str:
    rows = "".join(
        f"<tr class='{_state_class(f)}'><td>{html.escape(f.check)}</td>"
        f"<td>{html.escape(f.state)}</td><td>{html.escape(f.summary)}</td></tr>"
        for f in findings
    )
    return f"<table><tr><th>check</th><th>result</th><th>what was compared</th></tr>{rows}</table>"


def _state_class(finding: Finding) -> str:
    if not finding.passed:
        return finding.severity.lower()
    return "ok" if finding.judged else "unjudged"


def _chart_html(chart: Chart) -> str:
    """The chart's `<div>`; its specification is rendered as built, unvalidated
    (`report_charts` pins it to what Plotly's validation makes of it)."""
    from plotly.io import to_html

    title = f"<h3>{html.escape(chart.title)}</h3>"
    if chart.spec is None:
        return f"<div class='chart empty'>{title}<p>{html.escape(chart.empty_reason)}</p></div>"
    body = to_html(chart.spec, full_html=False, include_plotlyjs=False, validate=False)
    return f"<div class='chart'>{title}{body}</div>"


@cache
def _plotly_js() -> str:
    """plotly.js (4.6 MB), read once per process: every report embeds it whole."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}tr.ok td:nth-child(2){color:#2a7a2a}
tr.warn td:nth-child(2){color:#b36b00;font-weight:bold}
tr.error td:nth-child(2){color:#b00020;font-weight:bold}.chart{margin:1.5em 0}
tr.unjudged td:nth-child(2){color:#666;font-style:italic}
.chart.empty p{color:#555;border:1px dashed #bbb;padding:1.5em;background:#fafafa}
nav a{margin-right:1em}
"""

RUN, PERIOD = "run", "period"
PERIOD_REPORT = "period.html"
LATEST_REPORT = "latest.html"


def render_report(
    *,
    domain: str,
    run_id: str,
    days: Sequence[date],
    as_of: datetime,
    metrics: pl.DataFrame,
    findings: Sequence[Finding],
    links: dict[str, str],
    view: str = RUN,
    thresholds: Thresholds | None = None,
    fairness: FairnessLimits | None = None,
) -> str:
    """The report as one HTML document: the run's days (`view` run) or a period (`period`).

    Both views chart `metrics` over `days`; the checks are the latest run's judgement (a period
    view lists them as "as of the latest run"). Thresholds default to the detectors' defaults.
    """
    charts = build_charts(
        metrics, findings, days, thresholds or Thresholds(), fairness or FairnessLimits()
    )
    link_items = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>" for k, v in links.items()
    )
    span = f"{min(days)} to {max(days)}" if len(days) > 1 else str(days[0])
    if view == PERIOD:
        heading = f"Operations over a period: {html.escape(domain)}"
        scope = f"Days {span} ({len(days)} days, as stored in the audit database)"
        checks = f"<h2>Checks of the latest run (<code>{html.escape(run_id)}</code>)</h2>"
        other = f"<nav><a href='{LATEST_REPORT}'>the latest run</a></nav>"
    else:
        heading = f"Operations report: {html.escape(domain)}"
        scope = f"Days {span}; run <code>{html.escape(run_id)}</code>"
        checks = "<h2>Checks</h2>"
        other = f"<nav><a href='{PERIOD_REPORT}'>the period view</a></nav>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>hitl-gate {view} report: {html.escape(domain)} {span}</title>"
        f"<style>{STYLE}</style><script type='text/javascript'>{_plotly_js()}</script>"
        f"</head><body>{other}<h1>{heading}</h1>"
        f"<p>{scope}; as of {as_of:%Y-%m-%d %H:%M:%S} UTC.</p>"
        f"{checks}{_checks_table(findings)}"
        f"<h2>Charts</h2>{''.join(_chart_html(c) for c in charts)}"
        f"<h2>Where things are</h2><ul>{link_items}</ul></body></html>"
    )


def write_report(folder: Path, run_id: str, document: str, period: str | None = None) -> Path:
    """`<folder>/<run_id>.html`, `latest.html` with the same content, and `period.html`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{run_id}.html"
    target.write_text(document, encoding="utf-8")
    (folder / LATEST_REPORT).write_text(document, encoding="utf-8")
    if period is not None:
        (folder / PERIOD_REPORT).write_text(period, encoding="utf-8")
    return target

"""Great Expectations Data Docs that open with no network: self-contained pages and an index.

GE's page templates load Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from CDNs and
its logo from S3; GE does not ship those files. Offline, its pages render unstyled and its index
(a table drawn by bootstrap-table from inline data) lists nothing. So, after GE builds a page:

- `DATA_DOCS_CSS` (our own small stylesheet for the classes GE's pages use) is installed as
  GE's custom Data Docs style (`install_styles`), which GE inlines into every page it builds;
- `strip_remote_assets` removes every remote `<link>` and `<script src>` and points the logo at
  the copy GE does ship (`static/images/`); the validation tables are plain HTML already;
- `write_index` replaces GE's index with a static page: per domain, each suite with its
  expectations and its latest validation results (status, counts, link to GE's page), read from
  the GE project's own stores.

No GE import: everything here reads and writes files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

CUSTOM_STYLES = Path("plugins") / "custom_data_docs" / "styles" / "data_docs_custom_styles.css"
# The newest validation results listed per suite; older pages stay on disk, unlisted.
RESULTS_PER_SUITE = 30
_GE_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>\s*", re.IGNORECASE)
_REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>\s*", re.IGNORECASE
)
_GE_IMAGE = re.compile(r"src=\"" + re.escape(_GE_ASSETS) + r"([^\"?]+)[^\"]*\"")
_ANY_REMOTE_SRC = re.compile(r"\b(src|href)=\"https?://", re.IGNORECASE)

DATA_DOCS_CSS = """
body { font-family: system-ui, sans-serif; font-size: 14px; color: #1f2933; margin: 0;
  background: #fff; line-height: 1.45; }
a { color: #0b5cad; }
.navbar { display: flex; align-items: center; padding: 0 1.5rem; border-bottom: 1px solid #d9dee3;
  background: #f7f9fb; }
.breadcrumb { display: flex; list-style: none; gap: .5rem; margin: 0 0 0 1rem; padding: 0; }
.container-fluid { padding: 1.5rem 2rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.col-md-2, .col-lg-2 { flex: 0 0 16rem; }
.col-md-10, .col-lg-10 { flex: 1 1 40rem; min-width: 0; }
.col-12 { flex: 1 1 100%; }
.card { border: 1px solid #d9dee3; border-radius: 6px; margin-bottom: 1rem; background: #fff; }
.card-header { background: #eef2f6; padding: .5rem .9rem; border-bottom: 1px solid #d9dee3;
  font-weight: 600; }
.card-body { padding: .6rem .9rem; }
table, .table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; }
th, td { border: 1px solid #d9dee3; padding: .35rem .55rem; text-align: left;
  vertical-align: top; }
th { background: #eef2f6; }
.table-responsive { overflow-x: auto; }
.alert { padding: .6rem .9rem; border-radius: 6px; background: #eef2f6; }
.text-danger, .failed { color: #b42318; }
.text-success, .passed { color: #067647; }
.d-none, .modal, .collapse:not(.show) { display: none; }
.lead { font-size: 1.1rem; color: #52606d; }
.btn { display: inline-block; padding: .25rem .6rem; border: 1px solid #0b5cad;
  border-radius: 4px; background: #fff; color: #0b5cad; text-decoration: none; }
.hitl-offline-styles { display: block; }
.suite { border: 1px solid #d9dee3; border-radius: 6px; padding: .5rem 1rem; margin: .8rem 0; }
.suite h3 { margin: .3rem 0; font-size: 1.05rem; }
code { background: #eef2f6; padding: 0 .25rem; border-radius: 3px; }
"""


def install_styles(gx_dir: Path) -> Path:
    """Write `DATA_DOCS_CSS` where GE looks for custom Data Docs styles (GE inlines it)."""
    target = gx_dir / CUSTOM_STYLES
    if not target.is_file() or target.read_text(encoding="utf-8") != DATA_DOCS_CSS:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(DATA_DOCS_CSS, encoding="utf-8")
    return target


def strip_remote_assets(page: Path, site: Path) -> None:
    """Remove the page's remote stylesheets and scripts; serve GE's logo from the site itself.

    Links a reader clicks (`<a href="https://...">`) stay: they load nothing by themselves.
    """
    html = page.read_text(encoding="utf-8")
    up = "../" * (len(page.resolve().relative_to(site.resolve()).parts) - 1)
    html = _REMOTE_LINK.sub("", html)
    html = _REMOTE_SCRIPT.sub("", html)
    html = _GE_IMAGE.sub(lambda m: f'src="{up}static/images/{m.group(1)}"', html)
    _replace(page, html)


def remote_references(page: Path) -> list[str]:
    """Every remote `src` / `href` left in a page's tags other than anchors (for checks)."""
    html = page.read_text(encoding="utf-8")
    tags = re.findall(r"<(?!a\b)[a-z]+\b[^>]*>", html, re.IGNORECASE)
    return [tag for tag in tags if _ANY_REMOTE_SRC.search(tag)]


@dataclass(frozen=True)
class ResultLine:
    """One validation result as the index lists it."""

    run_name: str
    run_time: str
    success: bool
    evaluated: int
    failed: int
    page: str  # relative to the site


@dataclass(frozen=True)
class SuiteEntry:
    """One expectation suite: its expectations and its newest validation results."""

    name: str
    domain: str
    expectations: list[str]
    results: list[ResultLine]
    total_results: int


def read_suites(gx_dir: Path) -> list[SuiteEntry]:
    """Every suite of the GE project, by name, with its newest results, from GE's JSON stores."""
    suites_dir = gx_dir / "expectations"
    results_dir = gx_dir / "uncommitted" / "validations"
    entries = []
    for path in sorted(suites_dir.rglob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        stored_as = ".".join(path.relative_to(suites_dir).with_suffix("").parts)
        name = str(suite.get("name") or stored_as)
        folder = results_dir.joinpath(*name.split("."))
        # <suite folders>/<run name>/<run time>/<batch>.json; run times sort as text.
        found = sorted(
            folder.glob("*/*/*.json") if folder.is_dir() else [],
            key=lambda p: (p.parent.name, p.parent.parent.name),
            reverse=True,
        )
        entries.append(
            SuiteEntry(
                name=name,
                domain=name.split(".")[0],
                expectations=[_describe(e) for e in suite.get("expectations", [])],
                results=[_result(p, results_dir) for p in found[:RESULTS_PER_SUITE]],
                total_results=len(found),
            )
        )
    return sorted(entries, key=lambda entry: entry.name)


def _describe(expectation: dict) -> str:
    kwargs = {k: v for k, v in expectation.get("kwargs", {}).items() if k != "batch_id"}
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{expectation.get('type', '?')}({args})"


def _result(path: Path, results_dir: Path) -> ResultLine:
    result = json.loads(path.read_text(encoding="utf-8"))
    stats = result.get("statistics", {})
    page = Path("validations") / path.relative_to(results_dir).with_suffix(".html")
    return ResultLine(
        run_name=path.parent.parent.name,
        run_time=path.parent.name,
        success=bool(result.get("success")),
        evaluated=int(stats.get("evaluated_expectations", 0)),
        failed=int(stats.get("unsuccessful_expectations", 0)),
        page=page.as_posix(),
    )


_INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hitl-gate Data Docs</title>
<style>{{ css }}</style></head>
<body><nav class="navbar"><h1>Data Docs</h1></nav>
<div class="container-fluid">
<p class="lead">Expectation suites of every domain and their latest validation results
(Great Expectations on DuckDB). This page and the result pages load nothing from the network.</p>
{% for domain, suites in domains.items() %}
<section class="card" id="domain-{{ domain }}"><div class="card-header">{{ domain }}</div>
<div class="card-body">
{% for suite in suites %}
<div class="suite" data-suite="{{ suite.name }}"><h3>Suite <code>{{ suite.name }}</code></h3>
<details><summary>{{ suite.expectations | length }} expectations</summary><ul>
{% for e in suite.expectations %}<li><code>{{ e }}</code></li>{% endfor %}
</ul></details>
{% if suite.results %}
<table class="table"><thead><tr><th>run</th><th>run time</th><th>status</th>
<th>expectations</th><th>failed</th></tr></thead><tbody>
{% for r in suite.results %}<tr><td><a href="{{ r.page }}">{{ r.run_name }}</a></td>
<td>{{ r.run_time }}</td>
<td class="{{ 'passed' if r.success else 'failed' }}">{{ 'passed' if r.success else 'failed' }}</td>
<td>{{ r.evaluated }}</td><td>{{ r.failed }}</td></tr>{% endfor %}
</tbody></table>
{% if suite.total_results > suite.results | length %}<p>{{ suite.total_results }} results in
all; the newest {{ suite.results | length }} are listed.</p>{% endif %}
{% else %}<p>Not validated yet.</p>{% endif %}
</div>
{% endfor %}
</div></section>
{% else %}<p>No expectation suite has run yet.</p>
{% endfor %}
</div></body></html>
"""


@cache
def _index_template() -> jinja2.Template:
    """The index template, compiled once, on first use (nothing runs at import)."""
    return jinja2.Environment(autoescape=True).from_string(_INDEX_TEMPLATE)


def write_index(site: Path, gx_dir: Path) -> Path:
    """Replace the site's `index.html` with the static index of every domain's suites."""
    domains: dict[str, list[SuiteEntry]] = {}
    for entry in read_suites(gx_dir):
        domains.setdefault(entry.domain, []).append(entry)
    html = _index_template().render(css=DATA_DOCS_CSS, domains=dict(sorted(domains.items())))
    site.mkdir(parents=True, exist_ok=True)
    return _replace(site / "index.html", html)


def _replace(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a reader never sees half a page)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path

"""Observability on the session demo home: metrics table, stage events, traces, report, checks,
and the Dagster UI and the HTML reports rendered in a real headless Chromium (the system one).

The demo home's runs were launched by `hitl demo` (the CLI's runner), so the UI test also shows
that CLI runs carry the code location's origin: they are listed on their job's page.

The tests here only read the home, so they share one (`read_home`, restored once for the module)
and the two UI tests share one `dagster-webserver` on it: each start cost about 5 s of CPU (the
webserver and the code server it starts, both importing Dagster and the code location). At the
module's end, a check that no test wrote to the home (so that none can depend on another).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.home import HitlPaths
from tests.browser import CHROMIUM, launch_chromium
from tests.e2e.home_templates import HOME_ENV_NAMES, HomeTemplate, changed_entries

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.e2e
MISSING_CHROMIUM = "system Chromium missing: apt-get install -y chromium (.ci/run does this)"
DOMAIN = "consumer_credit"
# The webserver imports the code location before it answers: minutes on a loaded 2-core machine.
UI_START_S = 300
PAGE_TIMEOUT_MS = 120_000
# What reading a home changes in it: the Dagster instance's SQLite databases (WAL mode), whose
# readers create a shared-memory file and a log, and whose last reader to close checkpoints the
# log into the database file: the file changes, its rows do not.
READER_CHANGES = re.compile(r"home/dagster/.*\.db(-wal|-shm)?")


@pytest.fixture(scope="module")
def read_home(demo_template: HomeTemplate) -> Iterator[HitlPaths]:
    """The demo home for this module's tests, which only read it: restored once, held (the
    template's lock) until the module's last test is done, then checked unchanged."""
    with pytest.MonkeyPatch.context() as patch, demo_template.checkout() as work:
        for name in HOME_ENV_NAMES:
            patch.delenv(name, raising=False)
        yield HitlPaths.at(work / "home")
        written = [p for p in changed_entries(demo_template) if not READER_CHANGES.fullmatch(p)]
        assert not written, f"a test of this module wrote to the shared demo home: {written}"


def test_metrics_stage_events_and_traces_are_recorded(read_home: HitlPaths) -> None:
    with audit_connection(read_home.audit_db, read_only=True) as con:
        metrics = query_frame(
            con,
            "SELECT metric, dimension, key, sum(value) AS value FROM decision_metrics "
            "WHERE domain = ? GROUP BY ALL",
            [DOMAIN],
        )
        decided = query_frame(con, "SELECT count(*) AS n FROM decisions WHERE domain = ?", [DOMAIN])
        stages = query_frame(
            con,
            "SELECT stage, count(*) AS n FROM case_stage_events WHERE domain = ? GROUP BY ALL",
            [DOMAIN],
        )
    total = metrics.filter((metrics["metric"] == "cases") & (metrics["dimension"] == "all"))
    assert total["value"].item() == decided["n"].item()
    by_stage = dict(stages.iter_rows())
    for stage in ("ingested", "validated", "scored", "routed"):
        assert by_stage[stage] == decided["n"].item(), stage
    pending = metrics.filter(metrics["metric"] == "backlog")["value"].sum()
    assert by_stage["executed"] + pending == decided["n"].item()
    assert by_stage["exported"] > by_stage["verdict_received"] > 0
    reviewer = metrics.filter(
        (metrics["metric"] == "reviewed") & (metrics["dimension"] == "reviewer")
    )
    # the demo's signer (a labelled demo person); other tests may add reviewers
    assert any(str(k).startswith("demo-") for k in reviewer["key"].to_list())
    outcomes = metrics.filter(metrics["metric"] == "outcome_known")
    assert outcomes.height > 0
    traces = sorted((read_home.home / "traces" / DOMAIN).glob("*.jsonl"))
    assert len(traces) >= 90
    first = json.loads(traces[0].read_text(encoding="utf-8").splitlines()[0])
    names = [s["name"] for s in first["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert names[:4] == ["case", "ingested", "validated", "scored"]


def test_checks_are_evaluated_and_report_is_self_contained(read_home: HitlPaths) -> None:
    from dagster import AssetKey, DagsterInstance

    report = read_home.home / "reports" / DOMAIN / "latest.html"
    text = report.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]*\bsrc=", text) is None  # plotly.js inline, no CDN
    assert "Cases per day by route" in text and "automation_bias" in text
    with DagsterInstance.from_config(str(read_home.dagster_home)) as instance:
        key = AssetKey([DOMAIN, "decision_metrics"])
        event = instance.get_latest_materialization_event(key)
        assert event is not None
        metadata = event.asset_materialization.metadata
        assert {
            "volumes_by_route", "report", "report_period", "checks", "review_batches", "data_docs",
            "dagster/row_count", "dagster/column_schema",
        } <= set(metadata)  # fmt: skip
        assert "report_url" not in metadata  # no `file://` link: reports are not served here
        assert metadata["volumes_by_route"].value.startswith("| key |")  # Markdown, rendered
        assert "automation_bias" in metadata["checks"].value
        runs = [k for k in metadata if k.startswith("mlflow_run_consumer_credit_pd_v")]
        assert runs and all(Path(metadata[k].value).is_dir() for k in runs)
    # The demo's review-loop run judged the DEMO reviewer (200 verdicts in seconds); later runs
    # of other tests may be the latest, so look through every run's report.
    reports = (read_home.home / "reports" / DOMAIN).glob("*.html")
    assert any("near-zero review time" in p.read_text(encoding="utf-8") for p in reports)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dagster_ui(read_home: HitlPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster-webserver` on the module's demo home, on a free port, for both UI tests;
    killed (its process group) after.

    The webserver alone (no daemon, unlike `dagster dev`): the tests only read."""
    if CHROMIUM is None:
        pytest.skip(MISSING_CHROMIUM)
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(read_home.dagster_home),
        "HITL_HOME": str(read_home.home),
        "HITL_LANDING_DIR": str(read_home.landing),
        "HITL_REVIEW_DIR": str(read_home.review),
    }
    log = (tmp_path_factory.mktemp("dagster_webserver") / "dagster_webserver.log").open("w")
    webserver = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_START_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"dagster-webserver exited; see {log.name}")
                time.sleep(0.1)  # a refused connection costs nothing: ask often
        else:
            pytest.fail(f"dagster-webserver did not answer in {UI_START_S} s; see {log.name}")
        yield url
    finally:
        # Killed, not stopped: it only read, so it has nothing to save, and a stop (SIGTERM)
        # waits ~3 s for the calls open to its code server to end.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.skip(MISSING_CHROMIUM)
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


# The UI's own router moves to a URL as its links do: a history entry, then the `popstate` it
# listens to. The app stays loaded, so a page costs its queries and drawing only, not another
# load of the app's scripts (a reload: about 1 CPU s more a page on 2 cores, 2026-12-07).
PUSH = """url => {
    history.pushState({}, '', url);
    dispatchEvent(new PopStateEvent('popstate', {state: {}}));
}"""


def _shown(page: Page, texts: tuple[str, ...], *, exact: bool = False) -> Locator:
    """Wait until each of `texts` is shown; the last one's element."""
    for text in texts:
        element = page.get_by_text(text, exact=exact).first
        element.wait_for()
    return element


def _route(page: Page, url: str, *, leaving: Locator) -> None:
    """Move the loaded UI to `url` in its router; return once `leaving` (shown by the route
    left) is gone from the page, so that what the caller waits for next is `url`'s own."""
    left = leaving.element_handle()
    page.evaluate(PUSH, url)
    page.wait_for_function("element => !element.isConnected", arg=left)


def test_dagster_ui_shows_graph_checks_and_latest_materialization(
    dagster_ui: str, browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    # With several domains the global lineage shows one collapsed group per domain; the asset's
    # own lineage view draws the domain's whole graph, stage by stage.
    page.goto(f"{dagster_ui}/asset-groups/{DOMAIN}")
    groups = _shown(page, ("consumer_credit", "lending_club"))
    lineage = "?view=lineage&lineageScope=neighbors&lineageDepth=9"
    _route(page, f"{dagster_ui}/assets/{DOMAIN}/routed_decisions{lineage}", leaving=groups)
    stages = ("raw_cases", "case_features", "routed_decisions", "decision_metrics")
    graph = _shown(page, stages, exact=True)
    page.screenshot(path=str(tmp_path / "asset_graph.png"))

    _route(page, f"{dagster_ui}/assets/{DOMAIN}/decision_metrics?view=checks", leaving=graph)
    checks = _shown(page, ("automation_bias", "feature_drift_psi", "sla_breaches"))
    page.screenshot(path=str(tmp_path / "checks.png"))

    _route(page, f"{dagster_ui}/assets/{DOMAIN}/decision_metrics", leaving=checks)
    _shown(page, ("volumes_by_route", "report_period"))
    page.screenshot(path=str(tmp_path / "latest_materialization.png"), full_page=True)
    page.close()
    assert (tmp_path / "latest_materialization.png").stat().st_size > 10_000


def test_a_cli_launched_run_is_listed_on_its_job_page(
    read_home: HitlPaths, dagster_ui: str, browser, tmp_path: Path
) -> None:
    from dagster import DagsterInstance, RunsFilter

    from hitl_gate.app.origin import repository_origin

    job = f"{DOMAIN}_daily"
    with DagsterInstance.from_config(str(read_home.dagster_home)) as instance:
        runs = instance.get_runs(RunsFilter(job_name=job))
    assert runs, "the demo launched no daily run"
    assert all(r.remote_job_origin is not None for r in runs)  # every CLI run has its origin
    location = repository_origin().code_location_origin.location_name
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{dagster_ui}/locations/{location}/jobs/{job}/runs")
    page.get_by_text(runs[0].run_id[:8]).first.wait_for()  # the newest run, by its short id
    page.screenshot(path=str(tmp_path / "job_runs.png"), full_page=True)
    assert page.get_by_text("No runs found").count() == 0
    page.close()


PLOTTED = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(el => (el.data || []).some(t => (t.x || []).length > 0)).length"""
REPORTS = ("latest.html", "period.html")


class ShownReport(NamedTuple):
    """What a report page showed in Chromium, and every URL it requested."""

    plotted: int  # charts drawn with data
    drawn: int
    explained: list[str]  # the words shown in place of an empty chart
    thresholds: int  # threshold lines drawn
    requests: list[str]


@pytest.fixture(scope="module")
def shown_reports(
    read_home: HitlPaths, browser, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ShownReport]:
    """Each report loaded once, in one page (its renderer keeps plotly.js compiled), for the
    tests below; a full-page screenshot of each beside them."""
    shots = tmp_path_factory.mktemp("report_shots")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    shown = {}
    for name in REPORTS:
        requests.clear()
        page.goto((read_home.home / "reports" / DOMAIN / name).as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        shown[name] = ShownReport(
            plotted=page.evaluate(PLOTTED),
            drawn=page.locator(".js-plotly-plot").count(),
            explained=page.locator(".chart.empty p").all_inner_texts(),
            thresholds=page.locator(".js-plotly-plot .shapelayer path").count(),
            requests=list(requests),
        )
        page.screenshot(path=str(shots / name.replace(".html", ".png")), full_page=True)
    page.close()
    return shown


@pytest.mark.parametrize("name", REPORTS)
def test_report_views_draw_charts_with_data_and_explain_empty_ones(
    shown_reports: dict[str, ShownReport], name: str
) -> None:
    shown = shown_reports[name]
    assert shown.plotted == shown.drawn >= 4  # every drawn chart has data; no blank axes
    assert all(text.strip() for text in shown.explained)
    assert shown.drawn + len(shown.explained) == 8  # every chart either drawn or explained
    if name == "period.html":  # the demo's days hold verdicts: the override floor is drawn
        assert shown.thresholds >= 1


def test_html_report_renders_charts_offline(
    read_home: HitlPaths, shown_reports: dict[str, ShownReport], tmp_path: Path
) -> None:
    shown = shown_reports["latest.html"]
    shutil.copy(read_home.home / "reports" / DOMAIN / "latest.html", tmp_path / "report.html")
    assert shown.drawn >= 5
    assert shown.requests  # the page itself, at least: the requests were recorded
    assert all(url.startswith(("file:", "data:", "about:")) for url in shown.requests), (
        shown.requests
    )

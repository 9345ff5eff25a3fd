"""GE Data Docs open with no network: styled, every domain's suites and results listed.

Real suites of both shipped domains run by Great Expectations into one home's Data Docs, then
the index and a result page are loaded in the system Chromium with every non-file request
aborted (and recorded): the pages must need none, show our styles and list each domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest

from hitl_gate.core.domain import load_domain
from hitl_gate.quality.data_docs import remote_references, strip_remote_assets
from hitl_gate.quality.gx_suites import GxLocations, run_declared_suite
from tests.browser import CHROMIUM, launch_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser

DOMAINS = ("consumer_credit", "lending_club")
DAY = date(2018, 1, 10)

pytestmark = pytest.mark.slow  # Great Expectations runs and a headless browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[GxLocations, list[Path]]:
    """One validated_cases run per shipped domain, on a small day of its declared columns."""
    home = tmp_path_factory.mktemp("docs_home")
    where = GxLocations(home, home / "data_docs", home / "warehouse")
    pages = []
    for name in DOMAINS:
        domain = load_domain(name)
        folder = where.warehouse / name / "validated_cases"
        folder.mkdir(parents=True)
        numeric = [c for c, col in domain.contract.columns.items() if col.type in ("int", "float")]
        frame = pl.DataFrame({c: [1.0, 2.0, 3.0] for c in numeric}).with_columns(
            partition_date=pl.lit(DAY)
        )
        frame.write_parquet(folder / f"{DAY}.parquet")
        run = run_declared_suite(where, domain, "validated_cases", [DAY], f"run-{name}")
        pages += run.pages
    return where, pages


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module's pages (each opened in a context of its own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


def _open_offline(browser: Browser, page_file: Path) -> tuple[dict, list[str]]:
    """Load `page_file` with every non-file request aborted; what it shows and what it asked."""
    asked: list[str] = []

    def route(request_route) -> None:  # noqa: ANN001 - Playwright's Route
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            asked.append(url)
            request_route.abort()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/*", route)
        page.goto(page_file.as_uri())
        shown = page.evaluate(
            """() => ({
              text: document.body.innerText,
              headerBackground: getComputedStyle(document.querySelector('.card-header'))
                .backgroundColor,
              bodyMargin: getComputedStyle(document.body).marginTop,
              suites: [...document.querySelectorAll('[data-suite]')].map(e => e.dataset.suite),
              rows: document.querySelectorAll('table tr').length,
            })"""
        )
    finally:
        context.close()
    return shown, asked


@pytest.mark.skipif(CHROMIUM is None, reason="the system Chromium is not installed")
def test_the_index_lists_every_domain_styled_with_no_network(site, browser: Browser) -> None:
    where, _ = site
    shown, asked = _open_offline(browser, where.data_docs / "index.html")
    assert asked == []
    assert shown["headerBackground"] == "rgb(238, 242, 246)"  # set only by our stylesheet
    # Each run validates the day's rows and, for the trailing-days expectation, its row counts.
    assert shown["suites"] == [
        f"{name}.validated_cases{part}" for name in DOMAINS for part in ("", ".row_counts")
    ]
    for name in DOMAINS:
        assert f"run-{name}" in shown["text"]
    assert "failed" in shown["text"] or "passed" in shown["text"]


@pytest.mark.skipif(CHROMIUM is None, reason="the system Chromium is not installed")
def test_a_result_page_renders_styled_with_no_network(site, browser: Browser) -> None:
    where, pages = site
    assert len(pages) == 2 * len(DOMAINS)  # rows and row counts, per domain
    shown, asked = _open_offline(browser, pages[0])
    assert asked == []
    assert shown["headerBackground"] == "rgb(238, 242, 246)"
    assert shown["rows"] > 3  # the expectation table is plain HTML, drawn without scripts
    every_page = list(where.data_docs.rglob("*.html"))
    assert len(every_page) == 1 + 2 * len(pages)  # the index, result pages, suite pages
    assert {str(p): remote_references(p) for p in every_page} == {str(p): [] for p in every_page}


def test_remote_assets_are_stripped_and_the_logo_served_locally(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "s" / "r" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        '<link rel="stylesheet" href="https://cdn.example/b.css"/>\n'
        '<script src="https://code.jquery.com/jquery.min.js" crossorigin="x"></script>\n'
        '<img class="NO-CACHE" src="https://great-expectations-web-assets.s3.us-east-2.'
        'amazonaws.com/logo-long.png?d=1&id=2" alt="GE"/>\n'
        '<a href="https://greatexpectations.io">GE</a><script>var inline = 1;</script>'
    )
    assert len(remote_references(page)) == 3
    strip_remote_assets(page, tmp_path)
    html = page.read_text()
    assert remote_references(page) == []
    assert 'src="../../../static/images/logo-long.png"' in html
    assert '<a href="https://greatexpectations.io">' in html and "var inline = 1" in html

"""What an expectation check reports from a suite run: the table, failed labels, first page."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.core.domain import load_domain
from hitl_gate.quality.expectations import Outcome
from hitl_gate.quality.gx_suites import GxLocations, SuiteRun, run_declared_suite

OUTCOMES = [
    Outcome("rows vs trailing days", True, "ratio 1.0", 0, 0.0),
    Outcome("income not null", False, "12% null", 12, 12.0),
    Outcome("term in set", False, "2 unexpected", 2, 2.0),
]


def test_failed_labels_keep_declaration_order(tmp_path: Path) -> None:
    run = SuiteRun(OUTCOMES, success=False, pages=[], index=tmp_path / "index.html")
    assert run.failed == ["income not null", "term in set"]
    table = run.table()
    assert table.columns == ["label", "success", "observed", "unexpected", "unexpected_percent"]
    assert table["success"].to_list() == [True, False, False]


def test_the_first_page_is_the_runs_own_else_the_index(tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    pages = [tmp_path / "run-a.html", tmp_path / "run-b.html"]
    assert SuiteRun(OUTCOMES, True, pages, index).first_page == pages[0]
    assert SuiteRun(OUTCOMES, True, [], index).first_page == index


def test_a_passing_run_has_no_failed_labels(tmp_path: Path) -> None:
    assert SuiteRun(OUTCOMES[:1], True, [], tmp_path).failed == []


def test_a_domain_without_expectations_has_no_suite_to_run(tmp_path: Path) -> None:
    domain = load_domain("consumer_credit").model_copy(update={"expectations": None})
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    with pytest.raises(ValueError, match="declares no expectations file"):
        run_declared_suite(where, domain, "validated_cases", [], "run")

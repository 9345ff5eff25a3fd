"""A process reuses the validation definition it stored, and never serves a stale one.

`gx_suites` stores a suite's validation definition once and reuses it while the declared
expectations, the batch definition and both stored files are as it left them: a second run of
the same suite writes neither file nor the suite's Data Docs page again, but still validates
the day it is given; a changed suite, a new day, a stored file changed or removed by someone
else, or a removed page is seen at the next run.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.quality.expectations import Expectation, Suite
from hitl_gate.quality.gx_suites import GxLocations, run_suite

pytestmark = pytest.mark.slow  # Great Expectations runs

DAYS = (date(2018, 1, 10), date(2018, 1, 11))
STAGE = "validated_cases"


def _where(tmp_path: Path) -> GxLocations:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    folder = where.warehouse / "d" / STAGE
    folder.mkdir(parents=True)
    for day, amounts in zip(DAYS, ([1.0, 50.0], [1.0, 2.0, 3.0]), strict=True):
        frame = pl.DataFrame({"amount": amounts}, schema={"amount": pl.Float64})
        frame.with_columns(partition_date=pl.lit(day)).write_parquet(folder / f"{day}.parquet")
    return where


def _suite(max_value: float) -> Suite:
    spec = {"expectation": "expect_column_values_to_be_between", "column": "amount"}
    rows = {"expectation": "expect_table_row_count_within_trailing_range", "days": 3}
    return Suite(
        expectations=[
            Expectation.model_validate({**spec, "max_value": max_value}),
            Expectation.model_validate({**rows, "max_ratio": 5}),
        ]
    )


def _stored(where: GxLocations) -> dict[str, bytes]:
    gx = where.project_root / "gx"
    files = [*(gx / "expectations").rglob("*.json"), *(gx / "validation_definitions").glob("*")]
    return {str(p.relative_to(gx)): p.read_bytes() for p in sorted(files)}


def _suite_pages(where: GxLocations) -> dict[str, int]:
    pages = sorted((where.data_docs / "expectations").rglob("*.html"))
    return {str(p.relative_to(where.data_docs)): p.stat().st_mtime_ns for p in pages}


def test_an_unchanged_suite_is_stored_once_and_each_run_validates_its_own_day(
    tmp_path: Path,
) -> None:
    where = _where(tmp_path)
    first = run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r1")
    stored, pages = _stored(where), _suite_pages(where)
    assert len(stored) == 4 and len(pages) == 2  # the suite and its row counts' suite
    second = run_suite(where, "d", STAGE, _suite(10), [DAYS[1]], "r2")
    assert (first.success, first.outcomes[0].unexpected) == (False, 1)
    assert (second.success, second.outcomes[0].unexpected) == (True, 0)  # the new day's rows
    assert "0 of 1 days" in second.outcomes[1].observed
    assert _stored(where) == stored  # neither suite nor definition written again
    assert _suite_pages(where) == pages  # nor the suite pages
    assert len(second.pages) == 2 and all(page.is_file() for page in second.pages)
    assert set(second.pages).isdisjoint(first.pages)  # each run has its own result pages


def test_a_changed_suite_is_stored_and_drawn_again(tmp_path: Path) -> None:
    where = _where(tmp_path)
    run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r1")
    stored = _stored(where)
    run = run_suite(where, "d", STAGE, _suite(100), [DAYS[0]], "r2")
    assert (run.success, run.outcomes[0].unexpected) == (True, 0)
    changed = _stored(where)
    assert (
        changed["expectations/d/validated_cases.json"]
        != stored["expectations/d/validated_cases.json"]
    )
    assert b'"max_value": 100' in changed["expectations/d/validated_cases.json"]
    page = where.data_docs / "expectations" / "d" / "validated_cases.html"
    assert "100" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("change", ["suite removed", "definition rewritten"])
def test_a_stored_file_changed_by_someone_else_is_stored_again(tmp_path: Path, change: str) -> None:
    """Another process storing the same suite rewrites its files; a restored home may lack them."""
    where = _where(tmp_path)
    run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r1")
    gx = where.project_root / "gx"
    suite_file = gx / "expectations" / "d" / "validated_cases.json"
    definition_file = gx / "validation_definitions" / "d.validated_cases.json"
    if change == "suite removed":
        suite_file.unlink()
    else:  # as another process's store of it leaves it: a definition of another id
        stored = json.loads(definition_file.read_text(encoding="utf-8"))
        definition_file.write_text(json.dumps({**stored, "id": str(uuid.uuid4())}))
    run = run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r2")
    assert (run.success, run.outcomes[0].unexpected) == (False, 1)
    assert suite_file.is_file() and definition_file.is_file()


def test_a_removed_suite_page_is_drawn_again(tmp_path: Path) -> None:
    where = _where(tmp_path)
    run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r1")
    page = where.data_docs / "expectations" / "d" / "validated_cases.html"
    page.unlink()
    run_suite(where, "d", STAGE, _suite(10), [DAYS[0]], "r2")
    assert page.is_file() and "amount" in page.read_text(encoding="utf-8")

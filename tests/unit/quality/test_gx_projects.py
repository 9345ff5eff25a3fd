"""A process keeps its GE project open between checks, and sees every change made around it.

The kept context must never hide a change: an edited expectations file or threshold applies at
the next run in the same process, a project file rewritten by another process (another domain's
datasource) or a removed `gx/` folder (a restored home) is opened again, and the GE project file
still holds every domain's datasource afterwards.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import load_domain
from hitl_gate.quality.expectations import Expectation, Suite
from hitl_gate.quality.gx_projects import OPEN_PROJECTS, PROJECT_FILE, OpenProjects
from hitl_gate.quality.gx_suites import SITE_NAME, GxLocations, _site, run_declared_suite, run_suite
from tests.fork_server import FORK_SERVER_GROUP, shared_forkserver

pytestmark = pytest.mark.slow  # Great Expectations runs

DAY = date(2018, 1, 10)


def _store(warehouse: Path, domain: str, amounts: list[float | None]) -> None:
    folder = warehouse / domain / "validated_cases"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame({"amount": amounts}, schema={"amount": pl.Float64})
    frame.with_columns(partition_date=pl.lit(DAY)).write_parquet(folder / f"{DAY}.parquet")


def _suite(max_value: float) -> Suite:
    spec = {"expectation": "expect_column_values_to_be_between", "column": "amount"}
    return Suite(expectations=[Expectation.model_validate({**spec, "max_value": max_value})])


def _declared_domain(tmp_path: Path, max_value: float):  # noqa: ANN202 - a DomainConfig
    """consumer_credit with its expectations file in `tmp_path`, one threshold to edit."""
    (tmp_path / "expectations.yaml").write_text(
        "suites:\n  validated_cases:\n    expectations:\n"
        "      - {expectation: expect_column_values_to_be_between, column: annual_income, "
        f"max_value: {max_value}}}\n",
        encoding="utf-8",
    )
    domain = load_domain("consumer_credit")
    return domain.model_copy(update={"source_dir": tmp_path, "expectations": "expectations.yaml"})


def test_an_edited_threshold_applies_at_the_next_run_of_the_same_process(tmp_path: Path) -> None:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    folder = where.warehouse / "consumer_credit" / "validated_cases"
    folder.mkdir(parents=True)
    pl.DataFrame({"annual_income": [10.0, 50.0], "partition_date": [DAY, DAY]}).write_parquet(
        folder / f"{DAY}.parquet"
    )
    declared = tmp_path / "declared"
    declared.mkdir()
    stage = "validated_cases"
    strict = run_declared_suite(where, _declared_domain(declared, 20), stage, [DAY], "r1")
    loose = run_declared_suite(where, _declared_domain(declared, 100), stage, [DAY], "r2")
    assert (strict.success, strict.outcomes[0].unexpected) == (False, 1)
    assert (loose.success, loose.outcomes[0].unexpected) == (True, 0)
    # the stored suite (what its Data Docs page shows) is the edited one
    stored = next((where.project_root / "gx" / "expectations").rglob("*.json")).read_text()
    assert '"max_value": 100' in stored


def _validate_other_domain(where: GxLocations) -> bool:
    """Child process: validate domain `e` (adds its datasource to the GE project file)."""
    return run_suite(where, "e", "validated_cases", _suite(10), [DAY], "child").success


@pytest.mark.xdist_group(FORK_SERVER_GROUP)  # forked from that worker's forkserver
def test_a_project_changed_by_another_process_is_opened_again(tmp_path: Path) -> None:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    _store(where.warehouse, "d", [1.0, 50.0])
    _store(where.warehouse, "e", [1.0, 2.0])
    first = run_suite(where, "d", "validated_cases", _suite(10), [DAY], "r1")
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        kept = project.context
    with shared_forkserver().Pool(1) as pool:
        assert pool.apply(_validate_other_domain, (where,))
    project_file = (where.project_root / PROJECT_FILE).read_text(encoding="utf-8")
    assert "e_warehouse" in project_file and "d_warehouse" in project_file
    again = run_suite(where, "d", "validated_cases", _suite(100), [DAY], "r2")
    assert (first.success, again.success) == (False, True)
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        assert project.context is not kept  # reopened: the child had rewritten the file
        assert {"d_warehouse", "e_warehouse"} <= set(project.context.data_sources.all())
    # this process's own writes did not drop the child's datasource
    project_file = (where.project_root / PROJECT_FILE).read_text(encoding="utf-8")
    assert "e_warehouse" in project_file and "d_warehouse" in project_file


def test_a_project_is_kept_while_its_file_is_unchanged(tmp_path: Path) -> None:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    _store(where.warehouse, "d", [1.0])
    run_suite(where, "d", "validated_cases", _suite(10), [DAY], "r1")
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        kept = project.context
    run_suite(where, "d", "validated_cases", _suite(10), [DAY], "r2")
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        assert project.context is kept
    (where.project_root / PROJECT_FILE).write_text(
        (where.project_root / PROJECT_FILE).read_text(encoding="utf-8") + "\n", encoding="utf-8"
    )  # a hand edit
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        assert project.context is not kept


def test_a_removed_project_and_site_are_rebuilt_by_the_next_run(tmp_path: Path) -> None:
    """A home restored from a copy, or its `gx/` and `data_docs/` removed by hand."""
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    _store(where.warehouse, "d", [1.0, 50.0])
    run_suite(where, "d", "validated_cases", _suite(10), [DAY], "r1")
    shutil.rmtree(where.project_root / "gx")
    shutil.rmtree(where.data_docs)
    run = run_suite(where, "d", "validated_cases", _suite(10), [DAY], "r2")
    assert not run.success and run.outcomes[0].unexpected == 1
    assert (where.project_root / PROJECT_FILE).is_file() and run.index.is_file()
    assert all(page.is_file() for page in run.pages)
    page = run.pages[0].read_text(encoding="utf-8")
    assert "hitl-offline-styles" in page or "#eef2f6" in page  # our styles, installed again


def test_a_use_that_raises_is_not_kept(tmp_path: Path) -> None:
    projects = OpenProjects()
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    with projects.using(where.project_root, SITE_NAME, _site(where)) as project:
        first = project.context
    with (
        pytest.raises(RuntimeError),
        projects.using(where.project_root, SITE_NAME, _site(where)) as project,
    ):
        assert project.context is first
        raise RuntimeError("a validation failed half-way")
    with projects.using(where.project_root, SITE_NAME, _site(where)) as project:
        assert project.context is not first


def test_a_process_keeps_a_bounded_number_of_projects(tmp_path: Path) -> None:
    projects = OpenProjects(keep=2)
    roots = [tmp_path / str(n) for n in range(3)]
    opened = []
    for root in roots:
        where = GxLocations(root, root / "docs", root / "warehouse")
        with projects.using(root, SITE_NAME, _site(where)) as project:
            opened.append(project.context)
    where = GxLocations(roots[0], roots[0] / "docs", roots[0] / "warehouse")
    with projects.using(roots[0], SITE_NAME, _site(where)) as project:
        assert project.context is not opened[0]  # the oldest was let go
    where = GxLocations(roots[2], roots[2] / "docs", roots[2] / "warehouse")
    with projects.using(roots[2], SITE_NAME, _site(where)) as project:
        assert project.context is opened[2]

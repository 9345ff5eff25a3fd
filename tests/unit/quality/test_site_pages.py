"""A check's Data Docs pages are GE's own pages, and GE's static files are in the site."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.quality.data_docs import strip_remote_assets
from hitl_gate.quality.expectations import Expectation, Suite
from hitl_gate.quality.gx_projects import OPEN_PROJECTS
from hitl_gate.quality.gx_suites import SITE_NAME, GxLocations, _site, run_suite
from hitl_gate.quality.site_pages import COMPILED_TEMPLATES

pytestmark = pytest.mark.slow  # Great Expectations runs

DAY = date(2018, 1, 10)
_VARYING = re.compile(
    r"\d{8}T\d{6}\.\d+Z|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _checked(tmp_path: Path) -> GxLocations:
    where = GxLocations(tmp_path, tmp_path / "docs", tmp_path / "warehouse")
    folder = where.warehouse / "d" / "validated_cases"
    folder.mkdir(parents=True)
    frame = pl.DataFrame({"amount": [1.0, 50.0, None]}, schema={"amount": pl.Float64})
    frame.with_columns(partition_date=pl.lit(DAY)).write_parquet(folder / f"{DAY}.parquet")
    return where


def _suite() -> Suite:
    between = {"expectation": "expect_column_values_to_be_between", "column": "amount"}
    return Suite(
        expectations=[
            Expectation.model_validate({**between, "max_value": 10}),
            Expectation.model_validate({**between, "column": "amount", "min_value": 0}),
        ]
    )


def test_result_and_suite_pages_are_the_pages_ges_own_build_writes(tmp_path: Path) -> None:
    where = _checked(tmp_path)
    run = run_suite(where, "d", "validated_cases", _suite(), [DAY], "r1")
    pages = [run.pages[0], *where.data_docs.joinpath("expectations").rglob("*.html")]
    assert len(pages) == 2
    ours = {page: page.read_bytes() for page in pages}
    with OPEN_PROJECTS.using(where.project_root, SITE_NAME, _site(where)) as project:
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
        )

        results = project.context.validation_results_store.list_keys()
        suite = ExpectationSuiteIdentifier(name="d.validated_cases")
        for page in pages:
            page.unlink()
        project.site_builder.build(resource_identifiers=[*results, suite], build_index=False)
    for page in pages:
        strip_remote_assets(page, where.data_docs)  # as the check does after building
    assert {page: page.read_bytes() for page in pages} == ours


def test_static_files_are_copied_when_the_site_lacks_one(tmp_path: Path) -> None:
    where = _checked(tmp_path)
    run_suite(where, "d", "validated_cases", _suite(), [DAY], "r1")
    logo = where.data_docs / "static" / "images" / "logo-long.png"
    assert logo.is_file()
    kept = {p: p.stat().st_mtime_ns for p in (where.data_docs / "static").rglob("*") if p.is_file()}
    assert len(kept) > 10
    run_suite(where, "d", "validated_cases", _suite(), [DAY], "r2")
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # present: not written again
    logo.unlink()
    shutil.rmtree(where.data_docs / "static" / "fonts")
    run_suite(where, "d", "validated_cases", _suite(), [DAY], "r3")
    assert all(p.is_file() for p in kept)
    truncated = where.data_docs / "static" / "styles" / "data_docs_default_styles.css"
    truncated.write_bytes(truncated.read_bytes()[:10])  # another GE version's file, say
    run_suite(where, "d", "validated_cases", _suite(), [DAY], "r4")
    assert truncated.stat().st_size > 10


def test_a_new_projects_pages_use_the_compiled_templates_and_render_the_same(
    tmp_path: Path,
) -> None:
    from great_expectations.render.view import DefaultJinjaPageView

    first = _checked(tmp_path / "a")
    run_suite(first, "d", "validated_cases", _suite(), [DAY], "r1")
    assert COMPILED_TEMPLATES._code  # GE's templates, compiled once for the process
    second = _checked(tmp_path / "b")
    run_suite(second, "d", "validated_cases", _suite(), [DAY], "r1")
    with OPEN_PROJECTS.using(second.project_root, SITE_NAME, _site(second)) as project:
        section = project.site_builder.site_section_builders["validations"]
        assert section.view_class.env.bytecode_cache is COMPILED_TEMPLATES
        key = project.context.validation_results_store.list_keys()[0]
        result = project.context.validation_results_store.get(key)
        fresh = DefaultJinjaPageView(
            custom_styles_directory=section.view_class.custom_styles_directory
        )  # its own environment, compiling every template itself
        assert fresh.env.bytecode_cache is None
        pages = [  # GE's views change the content they render: each renders its own
            view.render(section.renderer_class.render(result), data_context_id="x")
            for view in (section.view_class, fresh)
        ]
    # the same page but for its render time and its elements' random ids
    assert len({_VARYING.sub("-", page) for page in pages}) == 1
    assert len(pages[0]) > 5000

"""A benchmark reads back exactly the figures its measuring child printed, or stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.child_result import run_measuring_child

MARK = "TEST-RESULT "


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_last_marked_line_is_read_back() -> None:
    code = (
        "print('noise'); print('TEST-RESULT {\"cpu_s\": 1}'); "
        "print('TEST-RESULT {\"cpu_s\": 2.5}'); print('more noise')"
    )
    assert run_measuring_child(_python(code), MARK, "two lines") == {"cpu_s": 2.5}


def test_a_failing_child_stops_the_benchmark_even_after_printing_figures() -> None:
    code = "import sys; print('TEST-RESULT {\"cpu_s\": 1}'); sys.exit('boom in the child')"
    with pytest.raises(SystemExit, match="the run failed:(.|\\n)*boom in the child"):
        run_measuring_child(_python(code), MARK, "the run")


def test_a_child_printing_no_figures_stops_the_benchmark() -> None:
    with pytest.raises(SystemExit, match="silent failed:\n.*only noise"):
        run_measuring_child(_python("print('only noise')"), MARK, "silent")


def test_the_environment_and_folder_given_reach_the_child(tmp_path: Path) -> None:
    code = (
        "import json, os; "
        "print('TEST-RESULT ' + json.dumps({'x': os.environ['BENCH_X'], 'cwd': os.getcwd()}))"
    )
    figures = run_measuring_child(
        _python(code), MARK, "env", env={"BENCH_X": "7"}, cwd=str(tmp_path)
    )
    assert figures == {"x": "7", "cwd": str(tmp_path)}

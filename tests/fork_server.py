"""This test process's forkserver, preloaded once for every test that forks a child.

Tests that need processes of their own with the stages' libraries loaded (the recovery test's
killed runs, the multiprocess executor's steps, Great Expectations validating in several
processes, a second opener of a store while the test holds its lock, a step forked as the
executor forks it, a command line) each used to start an interpreter of their own that imported
those libraries again: 3 to 12 s of CPU a test. They now fork from this process's
`multiprocessing` forkserver: a fresh interpreter that imports `PRELOAD` once (about 9 s of
CPU) and forks each child from itself, a process that only imported (no database, store or
lock opened, no thread started), so a child starts as a spawned one would, with the modules
loaded.

Python keeps one forkserver per process, started by the first child that needs one with the
preload set then; a later `set_forkserver_preload` (the multiprocess executor's
`STEP_PRELOAD`) changes nothing while it runs. Three servers with three lists used to start in
a worker (this module's own, the recovery and executor tests', the GE tests'), and whichever
of the last two came first set the other's list. Every user now starts it through
`shared_forkserver()` with one list, and runs on one xdist worker (`FORK_SERVER_GROUP`, the
claims home's, which holds the recovery test): one server per test run. `shared_forkserver`
refuses a server this module did not start, so no test forks from another list unnoticed.

`PRELOAD`: what `hitl demo`'s domain processes are forked after (`domain_preload()`: skops
first (models/model_format.py), the code location, Feast with `features` first, Great
Expectations, scikit-learn, MLflow's sklearn flavour and SQL stores, ibis, openpyxl, plotly, the
stages' modules, then work each run would repeat (`hitl_gate.app.domain_warmup`);
`STEP_PRELOAD` is its start), the recovery test's module (its children's target), then what a
killed run and a GE child need beyond it. A module left out only costs time (the child imports
it), never coverage.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable
from functools import cache
from importlib import import_module
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from hitl_gate.core.settings import (
    DOMAINS_ENV,
    EXECUTOR_ENV,
    HOME_ENV,
    LANDING_ENV,
    MAX_CONCURRENT_ENV,
    REVIEW_ENV,
    SLICE_ROWS_ENV,
)

# The xdist group of the tests using it: the claims home's (tests/e2e/conftest.py), which holds
# the recovery test, so that they share its worker and so its forkserver.
FORK_SERVER_GROUP = "claims_template"
# What a test sets to point the process at its own home or to pick how its run executes: the
# server keeps the environment it starts with for every child, whichever test started it (the
# executor test's `HITL_EXECUTOR=multiprocess` made the killed runs of a later recovery test
# run their steps in processes of their own, and their kills missed). The children get their
# home, domains and settings from their own arguments.
DEPLOYMENT_ENV = (HOME_ENV, LANDING_ENV, REVIEW_ENV, "DAGSTER_HOME")  # where an installation is
PER_TEST_ENV = (*DEPLOYMENT_ENV, DOMAINS_ENV, EXECUTOR_ENV, MAX_CONCURRENT_ENV, SLICE_ROWS_ENV)
_started: dict[str, int] = {}  # the pid of the server this module started in this process


@cache
def preload() -> tuple[str, ...]:
    """The server's modules, in import order (module docstring)."""
    from hitl_gate.app.demo import domain_preload

    return (
        *domain_preload(),
        "tests.e2e.test_recovery",
        "dagster._utils.test",
        "dagster._core.executor.in_process",
        "plotly.offline",
        "mlflow.tracing.processor.otel",
        "pandera.backends.polars.container",
        "pandera.strategies",
        "upath",
        "great_expectations.expectations",
        "great_expectations.core.run_identifier",
        "great_expectations.data_context.types.base",
        "great_expectations.data_context.types.resource_identifiers",
        "great_expectations.data_context.util",
        "hitl_gate.quality.gx_suites",
        "hitl_gate.quality.gx_dialect",
    )


def shared_forkserver() -> ForkServerContext:
    """The forkserver context, its server running with `preload()` (started now unless this
    module started it before in this process). Raises if a server this module did not start
    is running: its children would start from another list."""
    running = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    if running is not None and running != _started.get("pid"):
        raise RuntimeError(
            "this process's forkserver was started outside tests/fork_server.py, with another "
            "preload: start it through shared_forkserver() first"
        )
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload()))
    with pytest.MonkeyPatch.context() as patch:
        for name in PER_TEST_ENV:
            patch.delenv(name, raising=False)
        forkserver.ensure_running()
    _started["pid"] = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return context


class ForkedChild:
    """A child of the server, as `ForkServer.start` started it."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def join(self, timeout: float) -> int | None:
        """The exit code (negative: killed by that signal), or None if still running."""
        self._process.join(timeout)
        return self._process.exitcode

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join(30)


class ForkServer:
    """Children of the shared forkserver running a module-level function with their output in
    a file (the `fork_server` fixture of tests/conftest.py)."""

    def __init__(self, context: ForkServerContext) -> None:
        self._context = context
        self.preload = preload()

    def start(self, target: Callable[..., object], *args: str, output: Path) -> ForkedChild:
        """Fork a child running `target(*args)` (a module-level function), its stdout and
        stderr going to `output`."""
        name = f"{target.__module__}:{target.__qualname__}"
        process = self._context.Process(target=_run_child, args=(name, list(args), str(output)))
        process.start()
        return ForkedChild(process)


def _run_child(target: str, args: list[str], output: str) -> None:
    """In the forked child: run the target with its output in the file, then exit with its
    exit code (a command line's own, 0 when it returns, 1 when it raises)."""
    code = 1
    try:
        with open(output, "w", encoding="utf-8") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
        module, name = target.split(":")
        getattr(import_module(module), name)(*args)
        code = 0
    except SystemExit as exc:  # a command line's own exit code
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - any failure is the child's exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

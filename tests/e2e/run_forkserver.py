"""This test process's forkserver, preloaded for a day's run, shared by the tests that start one.

The recovery test's killed runs and the multiprocess executor's step processes are forked from
a `multiprocessing` forkserver: a fresh interpreter that imports the heavy libraries once, about
9 s of CPU. Python keeps one forkserver per process, started by the first child that needs it
with the preload set then; a later `set_forkserver_preload` (the multiprocess executor's
`STEP_PRELOAD`) changes nothing while it runs. Each test started it for itself: whichever came
first in a worker set its list, and a test alone on its worker paid a server of its own. Both
now start it through `run_forkserver` with one list, `PRELOAD`, which holds what every one of
them imports (a module left out only costs time, the child imports it; never coverage), and
both run on the claims home's xdist worker (`RUN_FORKSERVER_GROUP`): one server per run.

`PRELOAD`: the recovery test's module (its children's target), what `hitl demo`'s domain
processes are forked after (`domain_preload()`: the code location, Feast with `features` first,
Great Expectations, scikit-learn, MLflow's sklearn flavour and SQL stores, skops, ibis,
openpyxl, plotly, the stages' modules; `STEP_PRELOAD` is its start), then what a killed run
needs beyond it (Dagster's reconstruction helpers and in-process executor, pandera's backends,
MLflow's tracing processor), then work each run would repeat (tests/e2e/forkserver_warmup.py).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

import pytest

from hitl_gate.app.demo import domain_preload
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
RUN_FORKSERVER_GROUP = "claims_template"
PRELOAD = [
    "tests.e2e.test_recovery",
    *domain_preload(),
    "dagster._utils.test",
    "dagster._core.executor.in_process",
    "plotly.offline",
    "mlflow.tracing.processor.otel",
    "pandera.backends.polars.container",
    "pandera.strategies",
    "upath",
    "tests.e2e.forkserver_warmup",
]
# What a test sets to point the process at its own home or to pick how its run executes: the
# server keeps the environment it starts with for every child, whichever test started it (the
# executor test's `HITL_EXECUTOR=multiprocess` made the killed runs of a later recovery test
# run their steps in processes of their own, and their kills missed). The children get their
# home, domains and settings from their own arguments.
PER_TEST_ENV = (HOME_ENV, LANDING_ENV, REVIEW_ENV, "DAGSTER_HOME", DOMAINS_ENV, EXECUTOR_ENV,
                MAX_CONCURRENT_ENV, SLICE_ROWS_ENV)  # fmt: skip


def run_forkserver() -> ForkServerContext:
    """The forkserver context, its server running with `PRELOAD` (started now unless this
    process started one before: then that one, as any child of this process would get)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with pytest.MonkeyPatch.context() as patch:
        for name in PER_TEST_ENV:
            patch.delenv(name, raising=False)
        forkserver.ensure_running()
    return context

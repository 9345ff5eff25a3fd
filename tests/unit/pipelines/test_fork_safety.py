"""Importing what a forkserver preloads must not start Polars' pool.

Dagster's multiprocess executor (and the recovery test) fork each step from a forkserver that
imported the code location first. If that import ran a Polars computation, the pool's threads
exist only in the server, and a forked step deadlocks on its first Polars call (it happened:
a regex check at domain load hung every multiprocess step and the kill-at-every-stage test).
`hitl demo` forks each domain's process from one that imported that and more
(`domain_preload()`, which starts with `STEP_PRELOAD`). The test process's forkserver
(tests/fork_server.py) imports the demo's list, in its order, with the modules of the other
tests that fork from it, so the step forked from it here covers both lists (and those
modules).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hitl_gate.app.demo import domain_preload  # STEP_PRELOAD, then the demo's own
from pipelines.executors import STEP_PRELOAD  # the code location and the stages' libraries
from tests.fork_server import FORK_SERVER_GROUP, ForkServer

pytestmark = [
    pytest.mark.slow,  # a fresh interpreter importing the code location (once per test process)
    pytest.mark.xdist_group(FORK_SERVER_GROUP),
]


def step() -> None:
    import polars as pl

    rows = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(100_000))
    assert pl.read_csv(io.BytesIO(rows)).group_by("a").len().height == 100_000


def test_a_step_forked_after_importing_the_code_location_can_use_polars(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    demo = tuple(domain_preload())
    start = fork_server.preload.index(demo[0])
    assert fork_server.preload[start : start + len(demo)] == demo  # the demo's list, in order
    assert domain_preload()[: len(STEP_PRELOAD)] == STEP_PRELOAD  # the executor's list is covered
    output = tmp_path / "step.out"
    child = fork_server.start(step, output=output)
    exitcode = child.join(90)
    if exitcode is None:
        child.kill()
    assert exitcode == 0, f"the forked step deadlocked or failed: {output.read_text()[-2000:]}"

"""Importing what a forkserver preloads must not start Polars' pool.

Dagster's multiprocess executor (and the recovery test) fork each step from a forkserver that
imported the code location first (`STEP_PRELOAD`); `hitl demo` forks each domain's process from
one that imported that and more (`domain_preload()`, which starts with `STEP_PRELOAD`). If an
import ran a Polars computation, the pool's threads exist only in the server, and a forked
process deadlocks on its first Polars call (it happened: a regex check at domain load hung every
multiprocess step and the kill-at-every-stage test). One server preloading the demo's list
covers both (the import is most of the test's cost).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from hitl_gate.app.demo import domain_preload  # STEP_PRELOAD, then the demo's own
from pipelines.executors import STEP_PRELOAD  # the code location and the stages' libraries

pytestmark = pytest.mark.slow  # a fresh interpreter whose forkserver imports the code location

# A fresh interpreter, so its forkserver is started here with this preload (a test process may
# already run one with another).
SCRIPT = """
import io, multiprocessing

def step():
    import polars as pl
    rows = b"a,b\\n" + b"".join(b"%d,%d\\n" % (i, i) for i in range(100_000))
    assert pl.read_csv(io.BytesIO(rows)).group_by("a").len().height == 100_000

if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload({preload!r})
    child = context.Process(target=step)
    child.start()
    child.join(timeout=90)
    if child.exitcode is None:
        child.kill()
    raise SystemExit(0 if child.exitcode == 0 else 1)
"""


def test_a_step_forked_after_importing_the_code_location_can_use_polars(tmp_path) -> None:
    preload = domain_preload()
    assert preload[: len(STEP_PRELOAD)] == STEP_PRELOAD  # the executor's list is covered
    script = tmp_path / "forked_step.py"
    script.write_text(SCRIPT.replace("{preload!r}", repr(list(preload))), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=240)
    assert result.returncode == 0, (
        "the forked step deadlocked or failed: " + (result.stderr.decode()[-2000:])
    )

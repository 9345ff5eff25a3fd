"""`hitl_gate.app.domain_warmup`: what the demo's forkserver does once, a forked child starts
with (the tests' server preloads the demo's list, tests/fork_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.app.demo import domain_preload
from tests.fork_server import FORK_SERVER_GROUP, ForkServer

pytestmark = [
    pytest.mark.slow,  # a fresh interpreter importing the code location (once per test process)
    pytest.mark.xdist_group(FORK_SERVER_GROUP),
]


def started_warm() -> None:
    """In the child: MLflow's package map is there, and the run shard comes from the cache."""
    from mlflow.utils import requirements_utils

    from pipelines.event_log_storage import fresh_run_shard

    assert requirements_utils._MODULES_TO_PACKAGES is not None
    made = fresh_run_shard.cache_info()
    assert made.currsize == 1, made
    fresh_run_shard()
    assert fresh_run_shard.cache_info().misses == made.misses  # not made again in the child


def test_domain_processes_start_with_the_warm_up_done(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    assert domain_preload()[-1] == "hitl_gate.app.domain_warmup"  # last: after what it uses
    output = tmp_path / "child.out"
    child = fork_server.start(started_warm, output=output)
    exitcode = child.join(90)
    if exitcode is None:
        child.kill()
    assert exitcode == 0, output.read_text()[-2000:]

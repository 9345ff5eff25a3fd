"""skops is imported before the large libraries wherever it is preloaded (models/model_format.py):
its import walks every module loaded before it, once per trusted type that names no module."""

from __future__ import annotations

import sys

from hitl_gate.app.demo import domain_preload
from models.model_format import MODEL_FORMAT_MODULE
from pipelines.executors import STEP_PRELOAD
from tests.fork_server import preload


def test_every_forkserver_preload_starts_with_skops() -> None:
    """The multiprocess executor's steps, `hitl demo`'s domain processes and the tests' children."""
    for modules in (STEP_PRELOAD, domain_preload(), preload()):
        assert modules[0] == MODEL_FORMAT_MODULE


def test_the_test_process_imported_skops_before_dagster() -> None:
    """tests/conftest.py imports it at collection, before any test module imports Dagster."""
    order = list(sys.modules)
    assert order.index(MODEL_FORMAT_MODULE) < order.index("dagster")

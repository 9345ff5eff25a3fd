"""Child processes for the tests that run Great Expectations in several processes at once.

Each child used to be spawned: a fresh interpreter importing `great_expectations` (about 3.5 s
of CPU) before doing a second's work. A fork server with GE imported starts each child as a
fork of itself instead: a process that never opened a database, a GE project or a lock (the
server only imports), so a child starts from the same clean state as a spawned one, with the
modules already loaded. The server is started once per test process and kept for its life.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

# What a child validating a suite imports (the GE modules `hitl_gate.quality` loads lazily).
PRELOAD = [
    "great_expectations",
    "great_expectations.expectations",
    "great_expectations.core.run_identifier",
    "great_expectations.data_context.types.base",
    "great_expectations.data_context.types.resource_identifiers",
    "great_expectations.data_context.util",
    "hitl_gate.quality.gx_suites",
    "hitl_gate.quality.gx_dialect",
]


def gx_processes() -> ForkServerContext:
    """The multiprocessing context whose children start with GE imported (module docstring)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context

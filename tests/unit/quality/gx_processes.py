"""Child processes for the tests that run Great Expectations in several processes at once.

Each child used to be spawned: a fresh interpreter importing `great_expectations` (about 3.5 s
of CPU) before doing a second's work. Forked from this test process's forkserver instead
(tests/fork_server.py, which imports GE and the modules `hitl_gate.quality` loads lazily), a
child starts from a process that never opened a database, a GE project or a lock (the server
only imports), so from the same clean state as a spawned one, with the modules loaded. Its
tests run on the server's xdist worker (`FORK_SERVER_GROUP`), so that one server serves them.
"""

from __future__ import annotations

from multiprocessing.context import ForkServerContext

from tests.fork_server import FORK_SERVER_GROUP, shared_forkserver

__all__ = ["FORK_SERVER_GROUP", "gx_processes"]


def gx_processes() -> ForkServerContext:
    """The multiprocessing context whose children start with GE imported (module docstring)."""
    return shared_forkserver()

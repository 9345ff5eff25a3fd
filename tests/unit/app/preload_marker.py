"""A module whose import leaves a trace: the file named by `PRELOAD_MARK_ENV`, if set.

Preloaded by the children's server in tests/unit/app/test_domain_processes.py, it shows the
test when that server is importing its preload (the server inherits the test's environment).
"""

from __future__ import annotations

import os
from pathlib import Path

PRELOAD_MARK_ENV = "HITL_TEST_PRELOAD_MARK"

if os.environ.get(PRELOAD_MARK_ENV):
    Path(os.environ[PRELOAD_MARK_ENV]).touch()

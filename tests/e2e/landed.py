"""Files a test lands as a source system lands them: written, closed, and older than the settle
interval, so the run that follows takes them at once.

A run waits out the settle interval (`HITL_LANDING_SETTLE_SECONDS`, 2 s by default) for a file
modified within it, in case it is still being written (hitl_gate/ingest/listing.py). A test's
file is complete when it is closed, so waiting for it is idle time; the interval itself is
tested on files staged young on purpose (tests/unit/ingest/test_settle.py, test_bad_inputs.py,
tests/unit/pipelines/test_landing_sensor.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SETTLED_AGE_S = 3600.0  # far past any settle interval a test home uses


def settled(*paths: Path) -> None:
    """Date each file of `paths` (and each file under a folder of them) an hour back."""
    stamp = time.time() - SETTLED_AGE_S
    for path in paths:
        files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
        for file in files:
            os.utime(file, (stamp, stamp))  # a missing file fails here, not later

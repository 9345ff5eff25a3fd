"""A test's copy of a template put back at one folder per module instead of a new folder per test.

The library keeps a DuckDB instance per audit file (`core.kept_instance`, keyed by the file's
path and its allowances): building one and closing it later costs about 30 ms of CPU, against
10 ms to attach and detach a file on a kept one. A template copied into each test's own
`tmp_path` is a new path, so a new instance, every test; put back at the same folder, the next
test's audit file has the same path and the kept instance serves it again. Each test still
starts from the template's files exactly (the folder is emptied first), alone or in any order.

Only for tests whose world lives entirely in the copied folder (nothing of theirs outside it
names it). An audit file of the folder still attached in this process (a connection an earlier
test left open) fails the put-back: its instance would otherwise serve the old file's pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hitl_gate.core.kept_instance import attached_under


def put_back(template: Path, place: Path) -> Path:
    """`template`'s files copied to `place`, whatever an earlier test left there removed first."""
    still_open = attached_under(place)
    assert not still_open, f"audit files still open, not replaced: {still_open}"
    shutil.rmtree(place, ignore_errors=True)
    shutil.copytree(template, place, symlinks=True)
    return place


def emptied(place: Path) -> Path:
    """`place` as a new empty folder, whatever an earlier test left there removed (a world the
    test builds itself there, as it would in its own `tmp_path`)."""
    still_open = attached_under(place)
    assert not still_open, f"audit files still open, not removed: {still_open}"
    shutil.rmtree(place, ignore_errors=True)
    place.mkdir(parents=True)
    return place

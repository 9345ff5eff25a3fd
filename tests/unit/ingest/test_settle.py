"""The settle interval on a clock the test holds: a young file is looked at again once.

The interval is waited out by one sleep for the whole folder; what the sleep finds decides.
The sleep here is the test's: it records what it was asked to wait and lets time pass (or a
writer append) instantly, so no test waits seconds for the listing (tests/unit/ingest/
test_bad_inputs.py stages a real writer against a real interval).
"""

from __future__ import annotations

import os
from pathlib import Path

from hitl_gate.ingest.listing import _unsettled

NOW = 1_700_000_000.0
SETTLE = 2.0


def _file(folder: Path, name: str, age_seconds: float) -> Path:
    path = folder / name
    path.write_text("case_id\nc1\n")
    os.utime(path, (NOW - age_seconds, NOW - age_seconds))
    return path


class Sleep:
    """Records each wait and runs `during` as if it happened while waiting."""

    def __init__(self, during=lambda: None) -> None:  # noqa: ANN001
        self.waits: list[float] = []
        self.during = during

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.during()


def test_young_files_unchanged_over_the_interval_are_taken_after_one_wait(tmp_path: Path) -> None:
    files = [_file(tmp_path, "a.csv", 0.5), _file(tmp_path, "b.csv", 1.5)]
    sleep = Sleep()
    assert _unsettled(files, SETTLE, wait=True, clock=lambda: NOW, sleep=sleep) == {}
    assert sleep.waits == [1.5]  # until the youngest is as old as the interval, once


def test_a_young_file_that_changes_while_waited_for_is_incomplete(tmp_path: Path) -> None:
    still, growing = _file(tmp_path, "a.csv", 1.0), _file(tmp_path, "b.csv", 1.0)
    sleep = Sleep(during=lambda: growing.open("a").write("c2\n"))
    found = _unsettled([still, growing], SETTLE, wait=True, clock=lambda: NOW, sleep=sleep)
    assert list(found) == [growing] and "settle interval of 2 s" in found[growing]
    assert sleep.waits == [1.0]


def test_old_files_are_taken_without_waiting_and_no_wait_means_not_yet(tmp_path: Path) -> None:
    old, young = _file(tmp_path, "a.csv", 60), _file(tmp_path, "b.csv", 0.1)
    sleep = Sleep()
    assert _unsettled([old], SETTLE, wait=True, clock=lambda: NOW, sleep=sleep) == {}
    assert sleep.waits == []
    found = _unsettled([old, young], SETTLE, wait=False, clock=lambda: NOW, sleep=sleep)
    assert list(found) == [young] and sleep.waits == []  # the sensor asks again next tick
    assert _unsettled([young], 0.0, wait=True, clock=lambda: NOW, sleep=sleep) == {}

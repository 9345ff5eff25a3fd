"""The live status line of long runs: what it says, and that it stays off without a terminal."""

from __future__ import annotations

import threading
import time

import pytest
from dagster import DagsterEventType, DagsterInstance

from hitl_gate.app import progress
from hitl_gate.app.progress import StepTally, live_progress


def test_the_line_names_steps_done_and_the_running_one() -> None:
    tally = StepTally()
    tally.record(DagsterEventType.STEP_START, "consumer_credit__raw_cases")
    tally.record(DagsterEventType.STEP_SUCCESS, "consumer_credit__raw_cases")
    tally.record(DagsterEventType.STEP_START, "consumer_credit__risk_scores")
    line = tally.line("consumer_credit 2018-01-01..2018-01-07", 37.6)
    assert (
        line == "consumer_credit 2018-01-01..2018-01-07: 1 steps done, running risk_scores (38 s)"
    )


def test_nothing_is_drawn_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """CI and pipes get the command's own lines only."""
    with DagsterInstance.ephemeral() as instance, live_progress(instance, "t", "a run"):
        pass
    assert capsys.readouterr() == ("", "")


def test_on_a_terminal_the_watcher_finds_no_run_and_still_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "shows_progress", lambda: True)
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.05)
    seen: list[str] = []
    with DagsterInstance.ephemeral() as instance:
        stop = threading.Event()
        thread = threading.Thread(
            target=progress._watch, args=(instance, "none", "a run", seen.append, stop)
        )
        thread.start()
        deadline = time.monotonic() + 60
        while len(seen) < 2 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # two lines drawn: the watcher went round its loop
        stop.set()
        thread.join(timeout=5)
    assert seen and all(line.startswith("a run: 0 steps done") for line in seen)

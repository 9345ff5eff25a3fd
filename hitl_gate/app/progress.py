"""A live status line for long runs on a terminal: which step, how many done, how long so far.

A 7-day run is silent for most of a minute otherwise. The run executes in this process's main
thread (`runner.run_job`), so a watcher thread reads the run's step events from the Dagster
instance every second and redraws one `rich` status line. Nothing is shown when stdout is not
a terminal (CI, pipes, tests): output there stays exactly the command's result lines.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagster import DagsterEventType, DagsterInstance, RunsFilter

PROGRESS_TAG = "hitl/progress"  # a run tag whose value lets the watcher find the run it started
STEP_EVENTS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
}
POLL_SECONDS = 1.0


@dataclass
class StepTally:
    """Steps seen so far in one run: finished ones and those started but not finished."""

    done: int = 0
    running: list[str] = field(default_factory=list)

    def record(self, kind: DagsterEventType, step_key: str) -> None:
        if kind == DagsterEventType.STEP_START:
            self.running.append(step_key)
            return
        self.done += 1
        if step_key in self.running:
            self.running.remove(step_key)

    def line(self, label: str, elapsed_s: float) -> str:
        """E.g. `consumer_credit 2018-01-01..2018-01-07: 6 steps done, running risk_scores
        (38 s)`."""
        now = f", running {short_step(self.running[-1])}" if self.running else ""
        return f"{label}: {self.done} steps done{now} ({elapsed_s:.0f} s)"


def short_step(step_key: str) -> str:
    """A step key without its domain prefix (`consumer_credit__risk_scores` -> `risk_scores`)."""
    return step_key.split("__", 1)[-1]


def shows_progress() -> bool:
    """Whether to draw a status line: only on an interactive terminal."""
    return sys.stdout.isatty()


@contextmanager
def live_progress(instance: DagsterInstance, token: str, label: str | None) -> Iterator[None]:
    """Draw the status of the run tagged `PROGRESS_TAG=token` while the block runs."""
    if label is None or not shows_progress():
        yield
        return
    from rich.console import Console

    stop = threading.Event()
    with Console().status(label) as status:
        watcher = threading.Thread(
            target=_watch, args=(instance, token, label, status.update, stop), daemon=True
        )
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=5)


def _watch(instance, token, label, update, stop) -> None:  # noqa: ANN001 - thread target
    started = time.monotonic()
    run_id = None
    while not stop.wait(POLL_SECONDS):
        elapsed = time.monotonic() - started
        try:
            if run_id is None:
                found = instance.get_run_records(RunsFilter(tags={PROGRESS_TAG: token}), limit=1)
                run_id = found[0].dagster_run.run_id if found else None
            tally = _recount(instance, run_id) if run_id else StepTally()
            update(tally.line(label, elapsed))
        except Exception:  # noqa: BLE001 - a status line must never break the run it describes
            update(f"{label} ({elapsed:.0f} s)")


def _recount(instance: DagsterInstance, run_id: str) -> StepTally:
    """The tally of `run_id` from its step events, in the order they happened."""
    records = instance.get_records_for_run(run_id, of_type=STEP_EVENTS).records
    tally = StepTally()
    for record in sorted(records, key=lambda r: r.storage_id):
        event = record.event_log_entry.dagster_event
        if event is not None:
            tally.record(event.event_type, event.step_key or "")
    return tally


@contextmanager
def domains_status(label: str) -> Iterator[Callable[[list[str], list[str]], None]]:
    """A status line for work done in other processes (`app.domain_processes`): the block gets
    a callback told which labels are running and which are done; on a terminal only."""
    if not shows_progress():
        yield lambda running, done: None
        return
    from rich.console import Console

    started = time.monotonic()
    with Console().status(label) as status:

        def update(running: list[str], done: list[str]) -> None:
            finished = f"; done: {', '.join(done)}" if done else ""
            elapsed = time.monotonic() - started
            status.update(f"{label}: running {', '.join(running)}{finished} ({elapsed:.0f} s)")

        yield update

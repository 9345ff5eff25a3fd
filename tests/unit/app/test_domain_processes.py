"""`app.domain_processes`: one call per domain in a process forked from a preloaded server,
results in order, fail fast.

The children's targets are in `process_targets` (a light module, imported by the children's
server); they record what they did in files under `tmp_path`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from hitl_gate.app.demo import demo_jobs
from hitl_gate.app.domain_processes import SPAWN, ChildFailed, run_in_processes, stop_all
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import DEMO_PARALLEL_ENV, HitlSettings, SettingsError
from tests.unit.app.preload_marker import PRELOAD_MARK_ENV
from tests.unit.app.process_targets import (
    AWAITS,
    DIES,
    IMPORTED,
    POOLS,
    SLEEP,
    STARTED,
    WAITS,
    parent_of_a_waiting_child,
    sleeper,
)


def _intervals(folder: Path, names: list[str]) -> list[tuple[float, float]]:
    values = [(folder / f"{n}.interval").read_text().split() for n in names]
    return [(float(a), float(b)) for a, b in values]


@pytest.mark.slow
def test_results_come_back_in_the_order_of_the_calls(tmp_path: Path) -> None:
    """The first call finishes last; its summary is still first. Two run at once.

    The first call ends only once the second has ended and the status line has said so (the
    file `heard`), so it finishes last however the machine schedules them, without a sleep."""
    calls = [
        ("slow", (str(tmp_path), "slow", ["quick.interval", "heard"])),
        ("quick", (str(tmp_path), "quick", [])),
    ]
    seen: list[tuple[list[str], list[str]]] = []

    def status(running: list[str], done: list[str]) -> None:
        seen.append((running, list(done)))
        if (running, done) == (["slow"], ["quick"]):
            (tmp_path / "heard").touch()

    results = run_in_processes(AWAITS, calls, 2, status)
    assert results == ["summary of slow", "summary of quick"]
    (slow_start, slow_end), (quick_start, quick_end) = _intervals(tmp_path, ["slow", "quick"])
    assert quick_end < slow_end and quick_start < slow_end  # they overlapped
    assert (["slow"], ["quick"]) in seen  # the status line heard that quick was done


@pytest.mark.slow
def test_one_job_runs_the_calls_one_after_the_other(tmp_path: Path) -> None:
    calls = [(n, (str(tmp_path), n, 0.1)) for n in ("a", "b", "c")]  # at once, they'd overlap
    assert run_in_processes(SLEEP, calls, 1) == [f"summary of {n}" for n in "abc"]
    intervals = _intervals(tmp_path, ["a", "b", "c"])
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(intervals))


@pytest.mark.slow
def test_a_failing_child_fails_the_call_with_its_line_and_stops_the_other(
    tmp_path: Path,
) -> None:
    calls = [
        ("waits", (str(tmp_path), "waits", False)),
        ("fails", (str(tmp_path), "fails", True)),
    ]
    started = time.monotonic()
    with pytest.raises(ChildFailed) as failed:
        run_in_processes(WAITS, calls, 2)
    assert str(failed.value) == "fails training failed at fails__trained_model: no features"
    assert failed.value.code == str(failed.value)  # the CLI prints it as the one line
    assert time.monotonic() - started < 60  # the waiting child was stopped, not waited for
    pid = int((tmp_path / "waits.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped: no such process any more


@pytest.mark.slow
def test_a_child_that_dies_without_a_word_fails_the_call_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ChildFailed, match="crash: process ended with exit code 3"):
        run_in_processes(DIES, [("crash", (str(tmp_path), "crash"))], 2)


@pytest.mark.slow
def test_each_child_sizes_its_thread_pools_to_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sizes are set before the children's server imports Polars, and Polars works in the
    children forked from it (the demo's whole preload list is checked for that in
    tests/unit/pipelines/test_fork_safety.py: its import is most of that test's cost)."""
    monkeypatch.delenv("POLARS_MAX_THREADS", raising=False)
    share = max(1, (os.cpu_count() or 1) // 2)
    calls = [(n, ()) for n in ("a", "b")]
    assert run_in_processes(POOLS, calls, 2, preload=["polars"]) == [f"{share} {share}"] * 2


@pytest.mark.slow
def test_children_start_with_the_preloaded_modules_imported() -> None:
    """What `preload` names is imported once, before the children are forked (not by each), and
    before the target's module (what comes first in a preload may depend on it)."""
    module = "xml.dom.minidom"  # imported by nothing else here
    calls = [(n, (module,)) for n in ("a", "b")]
    assert run_in_processes(IMPORTED, calls, 2, preload=[module]) == [True, True]
    assert run_in_processes(IMPORTED, calls, 2) == [False, False]


@pytest.mark.slow
def test_the_caller_prepares_while_the_preload_imports_and_before_any_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`before_children` runs while the children's server imports the preload (`hitl demo`
    sets up the home on one core while the server imports on the other), and every child
    starts after it returned: after it saw the preload imported, the server could fork the
    children at once, and it waits a moment more to give them every chance to."""
    mark = tmp_path / "preload imported"
    monkeypatch.setenv(PRELOAD_MARK_ENV, str(mark))
    seen: list[bool] = []
    prepared: list[float] = []

    def prepare() -> None:
        deadline = time.monotonic() + 120
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(mark.exists())
        time.sleep(0.5)
        prepared.append(time.monotonic())

    calls = [(n, (str(tmp_path), n)) for n in ("a", "b")]
    preload = ["tests.unit.app.preload_marker"]
    starts = run_in_processes(STARTED, calls, 2, preload=preload, before_children=prepare)
    assert seen == [True], "the preload was not imported while the caller prepared"
    assert min(starts) > prepared[0], "a child started before the caller had prepared"


@pytest.mark.slow
def test_a_failed_preparation_starts_no_child_and_leaves_no_process(tmp_path: Path) -> None:
    def prepare() -> None:
        raise RuntimeError("the home could not be prepared")

    calls = [(n, (str(tmp_path), n)) for n in ("a", "b")]
    with pytest.raises(RuntimeError, match="could not be prepared"):
        run_in_processes(STARTED, calls, 2, before_children=prepare)
    assert not list(tmp_path.glob("*.started"))
    assert not multiprocessing.active_children()  # the launcher was stopped and reaped


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_parent_stopped_leaves_no_child_running(tmp_path: Path, stop: int) -> None:
    """SIGTERM: the parent stops its children itself; SIGKILL: the child notices it is
    orphaned and stops its work."""
    parent = SPAWN.Process(target=parent_of_a_waiting_child, args=(str(tmp_path),))
    parent.start()
    pid_file = tmp_path / "waits.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists():
        assert parent.is_alive() and time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    child = int(pid_file.read_text())
    os.kill(parent.pid or 0, stop)
    parent.join(60)
    assert parent.exitcode == (1 if stop == signal.SIGTERM else -signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _alive(child):
        assert time.monotonic() < deadline, f"child {child} still running"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by init, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
def test_stopping_interrupts_then_terminates(tmp_path: Path) -> None:
    """A child that sleeps ends on the interrupt; one that ignores it is terminated."""
    calm = SPAWN.Process(target=sleeper, args=(str(tmp_path / "calm"), False))
    deaf = SPAWN.Process(target=sleeper, args=(str(tmp_path / "deaf"), True))
    for process in (calm, deaf):
        process.start()
    deadline = time.monotonic() + 120
    while not ((tmp_path / "calm").exists() and (tmp_path / "deaf").exists()):
        assert time.monotonic() < deadline, "the children never started"
        time.sleep(0.02)
    stop_all([calm], grace_s=30)  # room for a loaded machine to end it on the interrupt
    stop_all([deaf], grace_s=0.5)  # deaf: the interrupt's grace passes, then SIGTERM ends it
    assert not calm.is_alive() and not deaf.is_alive()
    assert calm.exitcode == 1  # KeyboardInterrupt: the interrupt ended it
    assert deaf.exitcode == -signal.SIGTERM


@pytest.mark.parametrize(
    ("setting", "domains", "cpus", "expected"),
    [
        (None, 2, 2, 2),  # one process per domain
        (None, 3, 2, 2),  # at most one per core
        (None, 1, 8, 1),  # one domain: in this process
        (1, 2, 2, 1),  # the sequential path, chosen
        (4, 2, 8, 2),  # never more than the domains
    ],
)
def test_demo_jobs(
    setting: int | None, domains: int, cpus: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    settings = HitlSettings(paths=HitlPaths.at(Path("/nowhere")), demo_parallel=setting)
    assert demo_jobs(settings, domains) == expected


def test_the_setting_is_read_once_and_travels() -> None:
    settings = HitlSettings.from_environ({DEMO_PARALLEL_ENV: "1"}, home="/h")
    assert settings.demo_parallel == 1
    assert HitlSettings.from_environ(settings.to_environ()) == settings
    assert HitlSettings.from_environ({}, home="/h").demo_parallel is None
    with pytest.raises(SettingsError, match=DEMO_PARALLEL_ENV):
        HitlSettings.from_environ({DEMO_PARALLEL_ENV: "0"}, home="/h")

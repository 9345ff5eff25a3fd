"""Run one call per domain in a process of its own, a few at once, and return the results in order.

`hitl demo` runs each domain's whole flow (ingestion, training, pipeline, review loop) in one
Python process, which keeps one core busy; two domains on two cores run side by side, as a
deployment runs two domains' schedules at once, in the same home.

The children are not started by the calling process but by a launcher it spawns (a fresh
interpreter: no copy of the caller's threads, open DuckDB, Dagster or SQLite handles, nor of its
environment beyond what it was started with). The launcher sizes the thread pools, then starts
a `forkserver` of its own that imports the children's libraries once (`preload`: Dagster,
Feast, MLflow, Great Expectations, scikit-learn... about 12 s of CPU each time), and forks each
child from it: two spawned children imported them twice. The launcher starts that server at
once, and the caller does its own set-up meanwhile (`before_children`: `hitl demo` registers its
people and creates the home's shared stores, importing Dagster, on the other core), then says
go; no child starts before. The server is the launcher's alone,
so a caller's own forkserver (the recovery test's, Dagster's multiprocess executor's) neither
serves the domains nor is changed by them, and it ends with the launcher. A preloaded module
must start no thread pool (a forked child would deadlock on it: the preload is tested like
`pipelines.executors.STEP_PRELOAD`). Where the platform has no forkserver, the children are
spawned. Every child gets everything it uses as pickled arguments (the `HitlSettings` object),
never through a rewritten environment.

A child's result comes back over a pipe, and the launcher's report (status, results, the first
failure) over another. A child that stops with `SystemExit` (the one line
`runner.raise_for_failure` names) or any other error fails the whole call with that line; the
children still running are stopped then, and on Ctrl-C or SIGTERM, so none is left behind; a
child or launcher whose parent died anyway (SIGKILL) stops its own work
(`_stop_when_orphaned`).

Each child gets the cores divided among the processes running at once for the thread pools
that wait by spinning (OpenMP, OpenBLAS) and Polars': two children each sizing its pools to
both cores would spin for a core the other holds (tests/conftest.py measured 3-10x the CPU for
scikit-learn's fits that way). Libraries read those sizes from the environment when they load,
so the launcher sets them (keeping a deployment's own values) before its forkserver imports
anything, and a spawned child before it imports its target, named as `module:function` for
that reason.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

SPAWN = multiprocessing.get_context("spawn")
# How long a stopped child gets to end its run (Ctrl-C: Dagster records the run as failed)
# before it is terminated, then killed; the launcher gets twice that to stop its children.
STOP_GRACE_SECONDS = 10.0
# The thread pools sized per child (`_size_thread_pools`); DuckDB's threads sleep when idle.
THREAD_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS")
Status = Callable[[list[str], list[str]], None]
Context = SpawnContext | ForkServerContext


class ChildFailed(SystemExit):
    """A child process failed; the message is its one line (the CLI prints it, exit code 1)."""


@dataclass
class _Child:
    index: int
    label: str
    process: BaseProcess
    results: Connection


def _child_main(target: str, pickled_args: bytes, results: Connection, threads: int) -> None:
    """Run `target(*args)` and send back `(True, result)` or `(False, one line)`.

    The thread pools are sized before `target` and its arguments are imported (unpickled)."""
    _size_thread_pools(threads)
    threading.Thread(target=_stop_when_orphaned, name="orphan-watch", daemon=True).start()
    try:
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        outcome = (True, function(*pickle.loads(pickled_args)))
    except SystemExit as exc:  # a one-line failure, e.g. `raise_for_failure`'s
        outcome = (False, str(exc.code if exc.code is not None else "exited"))
    except KeyboardInterrupt:
        outcome = (False, "interrupted")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, traceback on stderr
        traceback.print_exc()
        outcome = (False, f"{type(exc).__name__}: {exc}")
    try:
        results.send(outcome)
    finally:
        results.close()


def _size_thread_pools(threads: int) -> None:
    """Size this process's spinning thread pools, unless the deployment sized them."""
    for name in THREAD_POOL_ENV:
        os.environ.setdefault(name, str(threads))


def _stop_when_orphaned() -> None:
    """If the parent dies, interrupt this process's work as Ctrl-C would (Dagster then records
    its run as failed), and end the process if that does not stop it in time."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    wait([parent.sentinel])
    os.kill(os.getpid(), signal.SIGINT)  # a real signal: it also wakes a blocking call
    time.sleep(STOP_GRACE_SECONDS)
    os._exit(1)


def run_in_processes(
    target: str,
    calls: Sequence[tuple[str, tuple]],
    jobs: int,
    on_change: Status | None = None,
    preload: Sequence[str] = (),
    before_children: Callable[[], None] | None = None,
) -> list[str]:
    """`target(*args)` for each `(label, args)` of `calls`, at most `jobs` processes at once,
    started in order; the results in the order of `calls`.

    `target` is `module:function`, imported by each child; `preload` names the modules the
    children's forkserver imports once, with the target's module (see the module docstring).
    `before_children()` runs in this process while that server imports them (seconds of
    CPU on one core: the caller's own set-up uses the other meanwhile); no child starts
    before it returns, and none at all if it raises (its error is raised here).
    The first failure stops the others and raises `ChildFailed` with the child's line.
    `on_change(running, done)` is told the labels running and done, about every second (a
    status line).
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(calls))))
    pickled = [(label, pickle.dumps(args)) for label, args in calls]
    report, send = SPAWN.Pipe(duplex=False)
    go_read, go = SPAWN.Pipe(duplex=False)
    launcher = SPAWN.Process(
        target=_launcher_main,
        args=(target, pickled, jobs, threads, tuple(preload), send, go_read),
        name="hitl-domains",
        daemon=False,
    )
    launcher.start()
    send.close()  # the launcher holds the only writing end: its death reads as end of file
    go_read.close()  # likewise, this process holds the only writing end of `go`
    status: tuple[list[str], list[str]] = ([], [])
    with (
        _stopping_on_exit([launcher], 2 * STOP_GRACE_SECONDS, [report, go]),
        _terminate_as_exit(),
    ):
        if before_children is not None:
            before_children()
        go.send(True)
        go.close()
        while True:
            for kind, value in _messages(report):
                if kind == "status":
                    status = value
                else:
                    launcher.join()
                    if kind == "failed":
                        raise ChildFailed(value)
                    return value
            if on_change is not None:
                on_change(*status)
            if report.closed:
                launcher.join()
                raise ChildFailed(f"domain processes: launcher ended with {launcher.exitcode}")


def _messages(report: Connection) -> Iterator[tuple[str, Any]]:
    """The launcher's messages ready within a second; the pipe is closed at end of file."""
    while wait([report], timeout=1.0):
        try:
            yield report.recv()
        except EOFError:
            report.close()
            return


def _launcher_main(
    target: str,
    calls: list[tuple[str, bytes]],
    jobs: int,
    threads: int,
    preload: tuple[str, ...],
    report: Connection,
    go: Connection,
) -> None:
    """Start the forkserver's preload at once, then, once the caller says go (`go`: its
    `before_children` is done), the children (`_run_children`); report their status and
    outcome: `("status", (running, done))` as it changes, then `("done", results)` or
    `("failed", one line)`. A caller gone before saying go (end of file) starts no child."""
    _size_thread_pools(threads)  # before the forkserver, which inherits them, imports anything
    threading.Thread(target=_stop_when_orphaned, name="orphan-watch", daemon=True).start()
    context = _children_context(target, preload)

    def tell(running: list[str], done: list[str]) -> None:
        report.send(("status", (running, done)))

    try:
        if context is not SPAWN:
            forkserver.ensure_running()  # returns at once: the server imports `preload` now
        try:
            go.recv()
        except EOFError:
            raise SystemExit("domain processes: the caller ended before starting them") from None
        finally:
            go.close()
        outcome: tuple[str, Any] = (
            "done",
            _run_children(context, target, calls, jobs, threads, tell),
        )
    except SystemExit as exc:  # a child's line (`ChildFailed`), or SIGTERM's
        outcome = ("failed", str(exc.code if exc.code is not None else "exited"))
    except KeyboardInterrupt:
        outcome = ("failed", "interrupted")
    finally:
        _stop_forkserver()
    try:
        report.send(outcome)
    finally:
        report.close()


def _stop_forkserver() -> None:
    """End this process's forkserver and wait for it, once the children are reaped.

    It would end by itself when this process exits, but reaped by nobody then: waited for,
    its CPU and its children's count in this process's (and so in `time hitl demo`). The
    method is the one the standard library's own tests stop it with; missing, nothing."""
    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _children_context(target: str, preload: tuple[str, ...]) -> Context:
    """A forkserver that imports `preload` then the target's module first, where the platform
    has one (in the launcher: its own); else spawn. `preload`'s order is kept: what comes first
    in it may be cheaper to import with fewer modules loaded (models/model_format.py)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return SPAWN
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*preload, target.partition(":")[0]])
    return context


def _run_children(
    context: Context,
    target: str,
    calls: list[tuple[str, bytes]],
    jobs: int,
    threads: int,
    on_change: Status,
) -> list[str]:
    """The results of the calls in their order, at most `jobs` children at once; the first
    failure raises `ChildFailed` (the children still running are stopped)."""
    results: list[str | None] = [None] * len(calls)
    waiting = list(enumerate(calls))
    running: list[_Child] = []
    done: list[str] = []
    with _stopping_on_exit(running), _terminate_as_exit():
        while waiting or running:
            while waiting and len(running) < max(1, jobs):
                index, (label, args) = waiting.pop(0)
                running.append(_start(context, index, label, target, args, threads))
                on_change([c.label for c in running], list(done))
            ready = wait([c.results for c in running])
            for child in [c for c in running if c.results in ready]:
                running.remove(child)
                ok, text = _receive(child)
                if not ok:
                    raise ChildFailed(text)
                results[child.index] = text
                done.append(child.label)
                on_change([c.label for c in running], list(done))
    return [r for r in results if r is not None]


def _start(
    context: Context, index: int, label: str, target: str, args: bytes, threads: int
) -> _Child:
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(target, args, send, threads),
        name=f"hitl-{label}",
        daemon=False,
    )
    process.start()
    send.close()  # the child holds the only writing end: its death reads as end of file
    return _Child(index, label, process, receive)


def _receive(child: _Child) -> tuple[bool, str]:
    """The child's outcome; a child that died without sending one failed with its exit code."""
    try:
        ok, text = child.results.recv()
    except EOFError:
        child.process.join()
        return False, f"{child.label}: process ended with exit code {child.process.exitcode}"
    finally:
        child.results.close()
    child.process.join()
    return ok, text


@contextmanager
def _stopping_on_exit(
    running: Sequence[_Child | BaseProcess],
    grace_s: float = STOP_GRACE_SECONDS,
    pipes: Sequence[Connection] = (),
) -> Iterator[None]:
    """On leaving (a failure, Ctrl-C, or done), stop every process still running, wait for it,
    and close its pipe."""
    try:
        yield
    finally:
        stop_all([c.process if isinstance(c, _Child) else c for c in running], grace_s)
        for pipe in [*pipes, *(c.results for c in running if isinstance(c, _Child))]:
            pipe.close()


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM leaves the block as an exception (so the children are stopped), not at once.

    Only the main thread may set a signal handler; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_all(processes: Sequence[BaseProcess], grace_s: float = STOP_GRACE_SECONDS) -> None:
    """Interrupt each process (as Ctrl-C would), then terminate and kill what is still alive."""
    alive = [p for p in processes if p.is_alive()]
    for stop in (_interrupt, BaseProcess.terminate, BaseProcess.kill):
        for process in alive:
            if process.is_alive():
                stop(process)
        deadline = time.monotonic() + grace_s
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
        alive = [p for p in alive if p.is_alive()]
        if not alive:
            return


def _interrupt(process: BaseProcess) -> None:
    if process.pid is not None:
        os.kill(process.pid, signal.SIGINT)

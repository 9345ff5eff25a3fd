"""Run one call per domain in a process of its own, a few at once, and return the results in order.

`hitl demo` runs each domain's whole flow (ingestion, training, pipeline, review loop) in one
Python process, which keeps one core busy; two domains on two cores run side by side, as a
deployment runs two domains' schedules at once, in the same home. Children are started with
`spawn` (a fresh interpreter: no copy of a parent's threads or open DuckDB, Dagster or SQLite
handles) and get everything they use as pickled arguments (the `HitlSettings` object), never
through a rewritten environment.

A child's result comes back over a pipe. A child that stops with `SystemExit` (the one line
`runner.raise_for_failure` names) or any other error fails the whole call with that line; the
children still running are stopped then, and on Ctrl-C or SIGTERM, so none is left behind; a
child whose parent died anyway (SIGKILL) stops its own run (`_stop_when_orphaned`).

Each child gets the cores divided among the processes running at once for the thread pools
that wait by spinning (OpenMP, OpenBLAS) and Polars': two children each sizing its pools to
both cores would spin for a core the other holds (tests/conftest.py measured 3-10x the CPU for
scikit-learn's fits that way). Libraries read those sizes from the environment when they load,
so the child sets them (keeping a deployment's own values) before it imports its target,
which is named as `module:function` for that reason.
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
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

SPAWN = multiprocessing.get_context("spawn")
# How long a stopped child gets to end its run (Ctrl-C: Dagster records the run as failed)
# before it is terminated, then killed.
STOP_GRACE_SECONDS = 10.0
# The thread pools sized per child (`_size_thread_pools`); DuckDB's threads sleep when idle.
THREAD_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS")


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
    on_change: Callable[[list[str], list[str]], None] | None = None,
) -> list[str]:
    """`target(*args)` for each `(label, args)` of `calls`, at most `jobs` processes at once,
    started in order; the results in the order of `calls`.

    `target` is `module:function`, imported by each child (a fresh interpreter). The first
    failure stops the others and raises `ChildFailed` with the child's line.
    `on_change(running, done)` is told the labels running and done as they change (a status
    line).
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(calls))))
    results: list[str | None] = [None] * len(calls)
    waiting = list(enumerate(calls))
    running: list[_Child] = []
    done: list[str] = []
    with _stopping_on_exit(running), _terminate_as_exit():
        while waiting or running:
            while waiting and len(running) < max(1, jobs):
                index, (label, args) = waiting.pop(0)
                running.append(_start(index, label, target, args, threads))
            if on_change is not None:
                on_change([c.label for c in running], done)
            ready = wait([c.results for c in running], timeout=1.0)
            for child in [c for c in running if c.results in ready]:
                running.remove(child)
                ok, text = _receive(child)
                if not ok:
                    raise ChildFailed(text)
                results[child.index] = text
                done.append(child.label)
    return [r for r in results if r is not None]


def _start(index: int, label: str, target: str, args: tuple, threads: int) -> _Child:
    receive, send = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(
        target=_child_main,
        args=(target, pickle.dumps(args), send, threads),
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
def _stopping_on_exit(running: list[_Child]) -> Iterator[None]:
    """On leaving early (a failure, Ctrl-C), stop every child still running, and wait for it."""
    try:
        yield
    finally:
        stop_all([c.process for c in running])
        for child in running:
            child.results.close()


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

"""What the children of tests/unit/app/test_domain_processes.py run, by name (`module:function`).

The children's server imports its target's module after the preload: this one imports the
standard library and `app.domain_processes` only, so a child starts in a fraction of a second
even on a busy machine. The targets record what they did in files of the test's folder.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from hitl_gate.app.domain_processes import run_in_processes

SLEEP = f"{__name__}:sleep_then_name"
AWAITS = f"{__name__}:await_then_name"
WAITS = f"{__name__}:fail_or_wait"
DIES = f"{__name__}:die"
POOLS = f"{__name__}:pool_sizes"
IMPORTED = f"{__name__}:imported"
STARTED = f"{__name__}:started_at"
PATIENCE_SECONDS = 120.0


def sleep_then_name(folder: str, name: str, seconds: float) -> str:
    """Record the interval the call ran in, then return a summary naming it."""
    started = time.monotonic()
    time.sleep(seconds)
    Path(folder, f"{name}.interval").write_text(f"{started} {time.monotonic()}")
    return f"summary of {name}"


def await_then_name(folder: str, name: str, files: list[str]) -> str:
    """Wait until each of `files` exists in `folder` (what another party does: no sleep of a
    guessed length), then record the interval the call ran in and return a summary naming it."""
    started = time.monotonic()
    deadline = started + PATIENCE_SECONDS
    while not all(Path(folder, f).exists() for f in files) and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(folder, f"{name}.interval").write_text(f"{started} {time.monotonic()}")
    return f"summary of {name}"


def fail_or_wait(folder: str, name: str, fail: bool) -> str:
    """Fail with a one-line `SystemExit` (as `raise_for_failure` does) once another child wrote
    its process id, or write this process's id and wait long enough to be stopped."""
    if fail:
        deadline = time.monotonic() + PATIENCE_SECONDS
        while not any(Path(folder).glob("*.pid")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the other child is running by now
        raise SystemExit(f"{name} training failed at {name}__trained_model: no features")
    # Written under another name, then renamed: whoever sees `<name>.pid` reads the whole id
    # (a test polling for the file read it empty once, between its creation and the write).
    written = Path(folder, f"{name}.pid.partial")
    written.write_text(str(os.getpid()))
    written.replace(Path(folder, f"{name}.pid"))
    time.sleep(PATIENCE_SECONDS)
    return "never"


def sleeper(ready: str, deaf: bool) -> None:
    """Sleep, ignoring Ctrl-C (SIGINT) if `deaf`; say so in the file `ready` first."""
    if deaf:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(ready).touch()
    time.sleep(PATIENCE_SECONDS)


def die(folder: str, name: str) -> str:
    """End the process without a word, as a crash would."""
    os._exit(3)


def pool_sizes() -> str:
    """The sizes this child's thread pools got (the variable, and Polars' own pool), once a
    computation on Polars' pool ended ("deadlocked" if it did not within a minute: the pool's
    threads were started in the server this child was forked from, and exist only there)."""
    import polars as pl

    def group() -> None:
        rows = pl.DataFrame({"a": range(100_000)}).with_columns(b=pl.col("a") % 7)
        assert rows.group_by("a").len().height == 100_000

    computation = threading.Thread(target=group, daemon=True)
    computation.start()
    computation.join(PATIENCE_SECONDS / 2)
    if computation.is_alive():
        return "deadlocked"
    return f"{os.environ.get('POLARS_MAX_THREADS')} {pl.thread_pool_size()}"


def imported(module: str) -> bool:
    """Whether `module` was imported before this call by the server the child was forked from,
    and before this module (the server imports the preload first, then the target's module)."""
    order = list(sys.modules)
    return module in sys.modules and order.index(module) < order.index(__name__)


def started_at(folder: str, name: str) -> float:
    """Leave a trace of this child in `folder`; when it started (the system-wide monotonic
    clock, comparable between processes)."""
    Path(folder, f"{name}.started").touch()
    return time.monotonic()


def parent_of_a_waiting_child(folder: str) -> None:
    """Run one child that waits (`fail_or_wait`) until this process is stopped."""
    run_in_processes(WAITS, [("waits", (folder, "waits", False))], 1)

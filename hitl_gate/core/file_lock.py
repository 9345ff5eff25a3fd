"""An exclusive lock file between processes: the one helper for short critical sections.

Used where several processes must take turns on something that is not a DuckDB file (DuckDB
refuses a second writer by itself): the PKCS#11 token folder's first use (`audit.signer`),
the fold of per-run segments into the global log (`audit.run_segments`), MLflow's first store
open (`models.mlflow_store`) and Feast's registry (`features.store`). `flock` is released
by the kernel when the holder dies, so a killed process never leaves the lock held.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def exclusive_lock(path: Path, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created, with its folder, when missing) for the
    block; waits while another process holds it. With `remove`, the file is deleted at the end
    of the block while still held (a per-run lock file, used once: nothing piles up).

    A holder may delete the file (`remove`, `remove_if_free`), so a waiter that wakes up
    holding a file no longer at `path` opens it again: a lock counts only on the file the
    path names, so two processes never both hold `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        if _still_named(handle, path):
            break
        handle.close()  # deleted by its holder meanwhile: lock the file there now
    try:
        yield
    finally:
        if remove:
            path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _still_named(handle: IO[str], path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def is_held(path: Path) -> bool:
    """Whether another process holds `exclusive_lock(path)` now (False when there is no file).

    Asked without waiting, and without creating the file; a holder that died has released it
    (the kernel drops `flock`s)."""
    try:
        with _taken_without_waiting(path) as taken:
            return taken is None
    except FileNotFoundError:
        return False


def remove_if_free(path: Path) -> bool:
    """Delete the lock file `path` unless a process holds it (True: deleted, or none was
    there). Taken without waiting and deleted while held, so a process about to lock it locks
    a new file instead (`exclusive_lock`)."""
    try:
        with _taken_without_waiting(path) as taken:
            if taken is None:
                return False
            if _still_named(taken, path):
                path.unlink(missing_ok=True)
            return True
    except FileNotFoundError:
        return True


@contextmanager
def _taken_without_waiting(path: Path) -> Iterator[IO[str] | None]:
    """The lock on the existing file `path`, taken without waiting: its open file while the
    block holds it, None when another process holds it. FileNotFoundError when there is no
    file (none is created)."""
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

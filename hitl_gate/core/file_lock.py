"""An exclusive lock file between processes: the one helper for short critical sections.

Used where several processes must take turns on something that is not a DuckDB file (DuckDB
refuses a second writer by itself): the PKCS#11 token folder's first use (`audit.signer`) and
the fold of per-run segments into the global log (`audit.run_segments`). `flock` is released
by the kernel when the holder dies, so a killed process never leaves the lock held.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created, with its folder, when missing) for the
    block; waits while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_held(path: Path) -> bool:
    """Whether another process holds `exclusive_lock(path)` now (False when there is no file).

    Asked without waiting; a holder that died has released it (the kernel drops `flock`s)."""
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False

"""Who holds a DuckDB file: read out of DuckDB's lock error, so messages can name the holder.

DuckDB allows one writing process per file (or any number of read-only ones); a process that
cannot take the file gets an `IOException` whose text names the holder's program and PID
("Conflicting lock is held in /usr/bin/python3 (PID 4242)"). People need that PID to find the
session in the way (an auditor's client, a stuck run), so every lock failure is reported as
one line naming it, and never as DuckDB's paragraph or a traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hitl_gate.core.database import audit_connection

_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_USER = re.compile(r"\(PID \d+\) by user (?P<user>[^.\s]+)")
# The retries' longest pause. A refused open costs ~5 ms of CPU, so asking four times a second
# costs a waiter ~2% of a core, and the file changes hands within a quarter second of its
# release (with 2 s pauses, the two domain processes of a `hitl demo` build slept 26 s
# waiting for each other, each wait up to 2 s longer than the holder held the file).
MAX_RETRY_DELAY_S = 0.25


@dataclass(frozen=True)
class LockHolder:
    """The process DuckDB says holds a file: program path, PID and user when it names one."""

    program: str
    pid: int
    user: str | None = None

    def describe(self) -> str:
        who = f"{Path(self.program).name} (PID {self.pid}"
        return who + (f", user {self.user})" if self.user else ")")


def is_lock_error(error: BaseException) -> bool:
    """Whether `error` is DuckDB refusing a file because another process holds it."""
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def lock_holder(error: BaseException) -> LockHolder | None:
    """The holder DuckDB names in a lock error, or None when it names none."""
    text = str(error)
    found = _HOLDER.search(text)
    if found is None:
        return None
    user = _USER.search(text)
    return LockHolder(found["program"], int(found["pid"]), user["user"] if user else None)


def lock_message(path: Path, error: BaseException, waited_s: float | None = None) -> str:
    """One line saying `path` is locked, by whom, how long we waited and what to do."""
    holder = lock_holder(error)
    by = f"held by {holder.describe()}" if holder else "held by another process"
    waited = f" after waiting {waited_s:g} s" if waited_s else ""
    return (
        f"{path} is locked, {by}{waited}: close that session (auditors query the replica, "
        f"`hitl audit sql`) and try again"
    )


class AuditDatabaseLocked(RuntimeError):
    """The audit file stayed held by another process past the wait; the text names the holder."""


@contextmanager
def open_when_free(
    path: Path,
    read_only: bool,
    wait_s: float,
    readable: Sequence[Path] = (),
    attachable: Sequence[Path] = (),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`audit_connection`, retried with backoff while another process holds the file.

    Runs take turns on short connections, so a wait of seconds is normal; past `wait_s`
    (`HitlSettings.audit_lock_wait_seconds`) the holder is a session in the way, and the error
    names it (`AuditDatabaseLocked`) instead of waiting on in silence.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.05
    with ExitStack() as stack:
        while True:
            try:
                con = stack.enter_context(audit_connection(path, read_only, readable, attachable))
                break
            except duckdb.IOException as error:
                if not is_lock_error(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AuditDatabaseLocked(lock_message(path, error, wait_s)) from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
        yield con

"""Parallel partition runs take turns on the audit file instead of failing on DuckDB's lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hitl_gate.core.db_lock import AuditDatabaseLocked
from pipelines.resources import AuditDatabase

pytestmark = pytest.mark.slow  # real component work: `make test` runs it, test-fast not

HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""
RELEASE_AFTER_S = 0.3  # the waiter retries with backoff (0.05 s, doubling) meanwhile


def _hold_lock(path: Path) -> subprocess.Popen:
    """A process holding `path` until a line or the end arrives on its stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _release(holder: subprocess.Popen) -> None:
    assert holder.stdin is not None
    holder.stdin.write("release\n")
    holder.stdin.close()


def test_connect_waits_for_another_process_then_fails_after_its_limit(tmp_path: Path) -> None:
    """One holder for both: first a wait shorter than its hold fails naming it, then a longer
    one outlasts it (released from another thread while this one waits in `connect`)."""
    path = tmp_path / "audit.duckdb"
    with _hold_lock(path) as holder:  # leaving closes its stdin: it releases and ends
        waiting = AuditDatabase(database=str(path), lock_wait_s=0.2)
        named = rf"locked, held by python\S* \(PID {holder.pid}\) after waiting 0.2 s"
        with pytest.raises(AuditDatabaseLocked, match=named), waiting.connect():
            pass

        started = time.monotonic()
        threading.Timer(RELEASE_AFTER_S, _release, args=(holder,)).start()
        with AuditDatabase(database=str(path), lock_wait_s=30).connect() as con:
            assert con.execute("SELECT count(*) FROM decision_metrics").fetchall() == [(0,)]
        assert time.monotonic() - started >= RELEASE_AFTER_S  # it did wait for the holder
        assert holder.wait(timeout=30) == 0

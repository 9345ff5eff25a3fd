"""Parallel partition runs take turns on the audit file instead of failing on DuckDB's lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitl_gate.core.db_lock import AuditDatabaseLocked
from pipelines.resources import AuditDatabase

pytestmark = pytest.mark.slow  # real component work: `make test` runs it, test-fast not

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_connect_waits_for_another_process_then_fails_after_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    holder = _hold_lock(path, 1.5)
    started = time.monotonic()
    with AuditDatabase(database=str(path), lock_wait_s=30).connect() as con:
        assert con.execute("SELECT count(*) FROM decision_metrics").fetchall() == [(0,)]
    assert time.monotonic() - started >= 0.5  # it did wait for the holder
    holder.wait(timeout=30)

    holder = _hold_lock(path, 10)
    try:
        waiting = AuditDatabase(database=str(path), lock_wait_s=0.2)
        named = rf"locked, held by python\S* \(PID {holder.pid}\) after waiting 0 s"
        with pytest.raises(AuditDatabaseLocked, match=named), waiting.connect():
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)

"""Recovery: a real `hitl run` killed with SIGKILL part-way, then re-run.

Runs after `test_e2e` (name order) because it adds one case to the shared demo home, and the
accounting tests there count the sample exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitl_gate.audit.store import audit_connection, query_frame, scalar
from hitl_gate.audit.verify import verify_audit
from hitl_gate.cli import main
from hitl_gate.home import HitlPaths

pytestmark = pytest.mark.e2e


def _verify(paths: HitlPaths):
    with audit_connection(paths.audit_db, read_only=True) as con:
        return verify_audit(con, paths.checkpoints_dir, None)


def test_run_killed_mid_way_is_recovered_by_the_next_run(demo_home: HitlPaths) -> None:
    """SIGKILL once the outbox is written (before the audit stage), then re-run twice."""
    day = "2018-01-05"
    folder = demo_home.landing / "applications" / day
    source = next(folder.glob("applications_*.csv")).read_text(encoding="utf-8").splitlines()
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        automatic = set(
            query_frame(con, "SELECT case_id FROM decisions WHERE route <> 'human_review'")[
                "case_id"
            ]
        )
    row = next(r.split(",") for r in source[1:] if r.split(",")[0] in automatic)
    row[0] = "LC18Q1-KILL1"  # a copy of an automatically decided case, under a new id
    (folder / "kill_test.csv").write_text(f"{source[0]}\n{','.join(row)}\n", encoding="utf-8")
    outbox = demo_home.home / "outbox" / "consumer_credit" / f"{day}.parquet"
    before = outbox.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "DAGSTER_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hitl_gate.cli", "--home", str(demo_home.home), "run",
         "--partition", day],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if outbox.stat().st_mtime_ns != before:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)

    main(["--home", str(demo_home.home), "run", "--partition", day])
    report = _verify(demo_home)
    assert report.ok, report.summary()
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        size = int(scalar(con, "SELECT count(*) FROM audit_log"))
        executed = int(scalar(con, "SELECT count(*) FROM executions WHERE case_id = ?",
                              ["LC18Q1-KILL1"]))  # fmt: skip
        logged = int(scalar(con, "SELECT count(*) FROM audit_log_index WHERE event_type = "
                            "'execution' AND entity_key LIKE '%LC18Q1-KILL1'"))  # fmt: skip
        balanced = scalar(con, "SELECT bool_and(balanced) FROM partition_accounting")
    assert executed == 1 and logged == 1 and balanced

    main(["--home", str(demo_home.home), "run", "--partition", day])  # idempotent re-run
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        assert int(scalar(con, "SELECT count(*) FROM audit_log")) == size
    assert _verify(demo_home).ok

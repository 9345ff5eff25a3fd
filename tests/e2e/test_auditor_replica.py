"""An auditor's session open on the replica of the demo home blocks nothing (issue 21.7).

An auditor process holds the replica open and queries it in a loop while the pipeline runs a
day (which seals and refreshes the replica at its end) and `hitl audit seal` runs: both finish
without waiting for it, the auditor never sees an error (its session reads the snapshot it
opened on, whole), and the replica is refreshed. Then every SQL example of docs/audit.md runs
on that replica.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from hitl_gate.app.cli import main
from hitl_gate.app.cli.sql_prompt import open_replica
from hitl_gate.audit.replica import current_manifest
from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.home import HitlPaths

DAY = "2018-02-14"
AUDITOR = """
import duckdb, json, os, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
heads, errors, queries = set(), [], 0
while not os.path.exists(sys.argv[2]):
    try:
        heads.add(con.execute("SELECT max(seq) FROM audit_events").fetchall()[0][0])
        con.execute("SELECT status, count(*) FROM case_trace GROUP BY ALL").fetchall()
        queries += 1
    except Exception as exc:
        errors.append(str(exc))
    time.sleep(0.05)
print(json.dumps({"heads": sorted(heads), "queries": queries, "errors": errors[:3]}))
"""


def audit_md_statements() -> list[str]:
    """Every statement of every ```sql block of docs/audit.md."""
    text = (PROJECT_ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


def test_an_auditor_on_the_replica_blocks_no_run_and_no_seal(demo_home: HitlPaths) -> None:
    before = current_manifest(demo_home.replica_dir)
    assert before is not None, "the demo's seals leave a replica"
    stop = demo_home.home / "auditor.stop"
    auditor = subprocess.Popen(
        [sys.executable, "-c", AUDITOR, str(demo_home.replica_dir / "audit.duckdb"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert auditor.stdout is not None and auditor.stdout.readline().strip() == "open"
        started = time.monotonic()
        home = ["--home", str(demo_home.home)]
        main([*home, "--domain", "consumer_credit", "run", "--partition", DAY])
        main([*home, "audit", "seal"])
        elapsed = time.monotonic() - started
    finally:
        stop.touch()
        out, _ = auditor.communicate(timeout=120)
    report = json.loads(out)
    assert report["errors"] == [], report
    assert report["queries"] > 10
    after = current_manifest(demo_home.replica_dir)
    assert after is not None and after["refreshed_at"] > before["refreshed_at"]
    assert elapsed < 600  # the run's own time; nothing waited for the auditor's lock

    statements = audit_md_statements()
    assert len(statements) >= 10
    with open_replica(demo_home.replica_dir) as con:
        for sql in statements:
            con.sql(sql).fetchall()  # each example runs on the replica as the guide shows it
        assert con.sql("SELECT count(*) FROM decisions").fetchall()[0][0] > 1000

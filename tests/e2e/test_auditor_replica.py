"""An auditor's session open on the replica blocks nothing (issue 21.7), during `hitl demo`
itself and on the demo home.

During the demo: the demo template's build runs with an auditor process beside it
(tests/e2e/replica_auditor.py), which opens a read transaction on the replica as soon as it
appears and queries it until the demo ends; its record is judged here. On the demo home: an
auditor process holds the replica open and queries it in a loop while the pipeline runs a
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
from hitl_gate.audit.run_seal import reading_session
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.home import HitlPaths
from tests.e2e.home_templates import HomeTemplate
from tests.e2e.replica_auditor import AUDITOR_RECORD

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


def test_an_auditor_session_held_through_the_demo_blocked_nothing(
    demo_template: HomeTemplate, demo_home: HitlPaths
) -> None:
    """The done-when, literally: the demo's later runs and seals went on while an auditor held
    a read transaction on the replica; every query succeeded and read one consistent state."""
    record = json.loads((demo_template.root / AUDITOR_RECORD).read_text(encoding="utf-8"))
    assert record["opened"], "the auditor saw the replica appear during the demo"
    assert record["errors"] == [], record["errors"]
    assert not record["live_open"], "the auditor never held the live audit file"
    assert record["queries"] >= 10 and record["held_s"] > 5
    # The session overlapped later seals: `current` moved on while it was held...
    assert len(record["switches"]) >= 3, record["switches"]
    assert record["opened_on"] == record["switches"][0] != record["switches"][-1]
    # ... yet it read one state throughout (its snapshot, whole), a real one:
    assert len(record["held"]) == 1, record["held"]
    decisions, log_rows, head, executions, statuses, entries = record["held"][0]
    assert log_rows == head > 0 and decisions > 0 and statuses and entries >= log_rows
    # New sessions meanwhile read newer seals (entries of either chain), never an older one.
    assert record["fresh"] == sorted(record["fresh"]) and record["fresh"][-1] > entries
    # The demo completed with the counts of its live database: the newest replica is the
    # sealed state of the home the demo left.
    final = current_manifest(demo_home.replica_dir)
    assert final is not None
    # Read as auditors' views are: the folded segments' entries in place (no copy in the file).
    with reading_session(demo_home.audit_db, Segments(demo_home.segments_dir)) as con:
        live = {
            t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in final["rows"]
        }
        live_head = con.execute("SELECT max(seq) FROM audit_log").fetchall()[0][0]
        live_entries = con.execute("SELECT count(*) FROM audit_events").fetchall()[0][0]
    assert final["head_seq"] == live_head
    # Every table as the last seal left it; the demo's closing report adds metrics after it.
    behind = {table for table, rows in final["rows"].items() if live[table] != rows}
    assert behind <= {"decision_metrics"}, behind
    assert live["decisions"] >= decisions and live_entries >= record["fresh"][-1]

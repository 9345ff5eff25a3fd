"""The auditors' replica: refreshed by every seal, read-only, and in nobody's way.

An auditor's session is another process holding the replica open and querying it in a loop
while the operator appends lineage and seals; the seal must neither wait nor fail, and the
auditor must never see an error (a missing or half-written file). Holding the LIVE file
instead makes the seal fail with one line naming the holder's PID, within the configured wait.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from hitl_gate.app.cli import main
from hitl_gate.app.cli.sql_prompt import open_replica
from hitl_gate.audit.replica import CACHES, current_manifest, refresh_replica
from hitl_gate.audit.replica_views import run_script
from hitl_gate.core.database import audit_connection
from hitl_gate.core.db_lock import AuditDatabaseLocked, lock_holder, open_when_free
from hitl_gate.core.home import HitlPaths
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.tamper_home import DOMAIN, add_row

AUDITOR = """
import duckdb, json, os, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
seen, errors = [], []
end = time.monotonic() + 120
while time.monotonic() < end and not os.path.exists(sys.argv[2]):
    try:
        seen.append(con.execute("SELECT count(*) FROM decisions").fetchall()[0][0])
        con.execute("SELECT count(*) FROM case_trace").fetchall()
    except Exception as exc:
        errors.append(str(exc))
    time.sleep(0.01)
print(json.dumps({"seen": sorted(set(seen)), "queries": len(seen), "errors": errors[:3]}))
"""


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HitlPaths:
    for name in ("HITL_HOME", "HITL_AUDIT_LOCK_WAIT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    home = HitlPaths.at(tmp_path / "home")
    with audit_connection(blank_if_missing(home.audit_db)) as con:
        add_row(con, "decisions", 1, domain=DOMAIN, case_id="C1", route="auto_approve")
    return home


def seal(paths: HitlPaths) -> None:
    main(["--home", str(paths.home), "audit", "seal"])


def test_every_seal_refreshes_the_replica(paths: HitlPaths) -> None:
    seal(paths)
    manifest = current_manifest(paths.replica_dir)
    assert manifest is not None and manifest["rows"]["decisions"] == 1
    with audit_connection(paths.audit_db, read_only=True) as con:
        head = con.execute("SELECT max(seq) FROM audit_log").fetchall()[0][0]
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert manifest["head_seq"] == head > 0
    assert set(manifest["rows"]) == tables - CACHES
    with audit_connection(paths.audit_db) as con:
        add_row(con, "decisions", 2, domain=DOMAIN, case_id="C2", route="auto_decline")
    seal(paths)
    with duckdb.connect(str(paths.replica_dir / "audit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchall() == [(2,)]
        assert con.execute("SELECT max(seq) FROM audit_events").fetchall()[0][0] > head


def test_any_duckdb_client_reads_the_views_script(paths: HitlPaths) -> None:
    """`views.sql` rebuilds the replica's views in a fresh session (no file of ours needed)."""
    seal(paths)
    script = (paths.replica_dir / "views.sql").read_text(encoding="utf-8")
    assert "/current/" not in script  # a path switched mid-query tears reads (module docstring)
    with duckdb.connect() as con:
        con.execute(script)
        assert con.execute("SELECT count(*) FROM decisions").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM case_status_summary").fetchall()[0][0] >= 0


@pytest.mark.parametrize("first", ["inputs", "dependants"])
def test_views_are_created_whatever_their_order(first: str) -> None:
    """The views database is made in one transaction when each view's inputs come first, and
    view by view, retried, when they do not (the rolled-back attempt leaves nothing behind)."""
    statements = [
        "CREATE OR REPLACE VIEW base AS SELECT 1 AS n",
        "CREATE OR REPLACE VIEW twice AS SELECT n * 2 AS n FROM base",
        "CREATE OR REPLACE VIEW both_ AS SELECT * FROM base, twice",
    ]
    if first == "dependants":
        statements.reverse()
    with duckdb.connect() as con:
        run_script(con, "-- a comment\n;\n" + ";\n".join(statements) + ";\n")
        assert con.execute("SELECT * FROM both_").fetchall() == [(1, 2)]
        views = con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall()
        assert views == [(3,)]
        with pytest.raises(duckdb.CatalogException):
            run_script(con, "CREATE VIEW orphan AS SELECT * FROM missing;\n")


def test_old_snapshots_are_pruned_and_partials_never_current(paths: HitlPaths) -> None:
    with audit_connection(paths.audit_db) as con:
        held = [refresh_replica(con, paths.replica_dir, keep=2) for _ in range(3)]
        folders = sorted(p.name for p in (paths.replica_dir / "snapshots").iterdir())
        assert folders == sorted(s.folder.name for s in held)  # in their grace: sessions on them
        snapshots = [
            refresh_replica(con, paths.replica_dir, keep=2, grace=timedelta(0)) for _ in range(4)
        ]
    kept = sorted(p.name for p in (paths.replica_dir / "snapshots").iterdir())
    assert kept == sorted(s.folder.name for s in snapshots[-2:])
    assert (paths.replica_dir / "current").resolve() == snapshots[-1].folder


def test_the_sql_prompt_reads_the_replica_and_nothing_else(
    paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(paths.home)]
    with pytest.raises(SystemExit, match="no audit replica at .* yet"):
        main([*home, "audit", "sql", "-c", "SELECT 1"])
    seal(paths)
    main([*home, "audit", "sql", "-c", "SELECT case_id FROM decisions"])
    assert "C1" in capsys.readouterr().out
    refused = {
        "DELETE FROM decisions": "",
        "CREATE TABLE x AS SELECT 1": "read-only",
        f"SELECT * FROM read_csv('{paths.audit_db}')": "",
        "SET enable_external_access = true": "",
        f"ATTACH '{paths.audit_db}' AS live": "",
    }
    for sql, text in refused.items():
        with pytest.raises(SystemExit) as stop:
            main([*home, "audit", "sql", "-c", sql])
        assert stop.value.code == 1, sql
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and text in err, (sql, err)


def test_the_prompt_runs_statements_until_quit(
    paths: HitlPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seal(paths)
    lines = iter(["SELECT case_id", "FROM decisions;", ".tables", "SELECT nope;", ".quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt: next(lines))
    main(["--home", str(paths.home), "audit", "sql"])
    out, err = capsys.readouterr()
    assert "C1" in out and "case_trace" in out
    assert "nope" in err and len(err.splitlines()) == 1


def start_auditor(target: Path, stop: Path) -> subprocess.Popen[str]:
    """A process that holds `target` open and queries it until the file `stop` exists."""
    auditor = subprocess.Popen(
        [sys.executable, "-c", AUDITOR, str(target), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert auditor.stdout is not None and auditor.stdout.readline().strip() == "open"
    return auditor


@pytest.mark.slow  # an auditor process beside the seals: `make test`, not test-fast
def test_an_auditor_on_the_replica_blocks_no_seal(paths: HitlPaths) -> None:
    """The done-when, in small: seals and writes proceed while an auditor queries the replica."""
    seal(paths)
    stop = paths.home / "auditor.stop"
    auditor = start_auditor(paths.replica_dir / "audit.duckdb", stop)
    started = time.monotonic()
    for n in range(2, 6):
        with audit_connection(paths.audit_db) as con:  # a writer: nothing waits for the auditor
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        seal(paths)
    elapsed = time.monotonic() - started
    stop.touch()
    out, _ = auditor.communicate(timeout=60)
    report = json.loads(out)
    assert report["errors"] == [] and report["queries"] > 20
    # The held session reads the one snapshot it opened on, whole, never a torn mix of two
    # (DuckDB re-opens a path within a query, so views over a switched path tore under load).
    assert report["seen"] == [1]
    with open_replica(paths.replica_dir) as fresh:  # a new session reads the newest snapshot
        assert fresh.execute("SELECT count(*) FROM decisions").fetchall() == [(5,)]
    assert elapsed < 60
    assert current_manifest(paths.replica_dir)["rows"]["decisions"] == 5  # type: ignore[index]


@pytest.fixture
def live_holder(paths: HitlPaths) -> Iterator[subprocess.Popen[str]]:
    """An auditor who opened the LIVE file read-only, the way the docs used to say."""
    auditor = start_auditor(paths.audit_db, paths.home / "never")
    yield auditor
    auditor.kill()
    auditor.wait()


@pytest.mark.slow  # a process holding the live file: `make test`, not test-fast
def test_an_auditor_on_the_live_file_is_named_by_the_seal(
    paths: HitlPaths,
    live_holder: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HITL_AUDIT_LOCK_WAIT_SECONDS", "0.3")
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        seal(paths)
    message = str(stop.value.code)
    assert time.monotonic() - started < 20
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert f"(PID {live_holder.pid}" in message and "after waiting 0.3 s" in message
    assert "is locked" in message and str(paths.audit_db) in message


@pytest.mark.slow  # a process holding the live file: `make test`, not test-fast
def test_the_wait_for_a_held_file_ends_naming_the_holder(
    paths: HitlPaths, live_holder: subprocess.Popen[str]
) -> None:
    started = time.monotonic()
    with (
        pytest.raises(AuditDatabaseLocked, match=rf"PID {live_holder.pid}\b"),
        open_when_free(paths.audit_db, False, 0.2),
    ):
        pass
    assert 0.2 <= time.monotonic() - started < 10  # it waited out its limit, no more
    with open_when_free(paths.audit_db, True, 0.2) as con:  # readers share the file
        assert con.execute("SELECT count(*) FROM decisions").fetchall() == [(1,)]


def test_the_holder_is_read_from_duckdbs_error() -> None:
    error = duckdb.IOException(
        'IO Error: Could not set lock on file "/h/audit.duckdb": Conflicting lock is held in '
        "/usr/bin/python3.11 (PID 4242) by user ann. See also https://duckdb.org/docs"
    )
    holder = lock_holder(error)
    assert holder is not None and holder.describe() == "python3.11 (PID 4242, user ann)"
    assert lock_holder(duckdb.IOException("IO Error: disk full")) is None

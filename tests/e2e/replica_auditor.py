"""An auditor who queries the replica all through `hitl demo` (issue 21: "an auditor session
open on the replica during `make demo` blocks nothing").

`auditor_during(home, record)` runs around the demo template's build (tests/e2e/conftest.py),
so no extra demo is paid for: this file, run as a script in its own process (an auditor's
DuckDB client is another process), waits for the replica to show a decided day (with segments
on, the ingestion run's own seal makes a replica earlier, holding no decision yet), opens it
read-only as soon as it does, begins a read transaction and queries it until the build ends,
while every later run and seal of the demo refreshes the replica. It records what it saw in
`record` (JSON), which tests/e2e/test_auditor_replica.py judges:

- `held`: the session's results (row counts of the lineage tables, the single chain's head,
  case statuses, the entries of both chains), one entry per distinct result: a consistent
  session has exactly one;
- `switches`: the snapshot the session opened on, then every newer one made while it was held
  (the demo's later seals, each of which `current` pointed at), `errors`: every failed query,
  `queries`, `held_s`;
- `fresh`: the entries of both chains a new session read at intervals (it must only grow);
- `live_open`: whether this process ever had the live `audit.duckdb` open (it must not: only
  then could it hold a lock a run or seal waits for).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AUDITOR_RECORD = "demo-auditor.json"  # beside the template's `work`: what the auditor saw
# Seconds between queries of the held session: the auditor must not slow the build it watches
# (the demo's seals are tens of seconds apart, so each is still followed by several queries).
POLL_S = 1.0
FRESH_EVERY = 5  # queries of the held session between two fresh sessions (one every ~5 s)
WAIT_POLL_S = 0.5  # seconds between looks for a new replica before the session opens
# The single chain's rows and head (a gapless chain: equal), then the entries of both chains
# (the single one and the runs' segments, `audit_events`): what grows with every seal.
SESSION_SQL = (
    "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM audit_log), "
    "(SELECT coalesce(max(seq), 0) FROM audit_events WHERE segment_id IS NULL), "
    "(SELECT count(*) FROM executions), "
    "(SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM "
    " (SELECT status, count(*) AS n FROM case_trace GROUP BY status)), "
    "(SELECT count(*) FROM audit_events)"
)
FRESH_SQL = "SELECT count(*) FROM audit_events"  # entries of both chains


@contextmanager
def auditor_during(home: Path, record: Path) -> Iterator[None]:
    """The auditor's process, from before the block (the build) until its end."""
    stop = record.with_suffix(".stop")
    stop.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, __file__, str(home), str(stop), str(record)], stdin=subprocess.PIPE
    )
    try:
        yield
    finally:
        stop.touch()
        assert process.stdin is not None
        process.stdin.close()  # wakes its pause (`_pause`): the build's end waits for no poll
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _live_open(live: Path) -> bool:
    """Whether this process has `live` (or its write-ahead log) open now."""
    folder = Path("/proc/self/fd")
    for fd in os.listdir(folder):
        try:
            target = os.readlink(folder / fd)
        except OSError:
            continue
        if target.startswith(str(live)):
            return True
    return False


def _pause(seconds: float, stop: Path) -> None:
    """Wait `seconds`, or until the builder closes this process's stdin, which it does right
    after creating `stop`: the end of the build is seen at once, not at the next poll."""
    ended, _, _ = select.select([sys.stdin], [], [], seconds)
    if ended and not stop.exists():  # stdin ended without the stop file: poll as before
        time.sleep(seconds)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when `path` is replaced or rewritten (inode, size, modification time)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _decided(script: Path) -> bool:
    """Whether the replica holds a decision yet, read in a new client (`.read views.sql`); a
    replica still being written for the first time is not decided yet."""
    import duckdb

    try:
        with duckdb.connect() as fresh:
            fresh.execute(script.read_text(encoding="utf-8"))
            return bool(fresh.execute("SELECT count(*) FROM decisions").fetchall()[0][0])
    except (OSError, duckdb.Error):
        return False


def _sealed_after(snapshots: Path, opened_on: str | None) -> list[str]:
    """The finished snapshots newer than the one the session opened on, as `current` names
    them: seals made while the session was held. Listed, not only read off `current` at each
    poll, because two seals a second apart under load would otherwise look like one (a
    snapshot stays for the replica's grace after it is replaced, so none is missed)."""
    try:
        names = sorted(p.name for p in snapshots.iterdir() if not p.name.startswith("."))
    except OSError:
        return []
    seals = [f"snapshots/{name}" for name in names]
    return [seal for seal in seals if opened_on is None or seal > opened_on]


def _watch(home: Path, stop: Path) -> dict:
    import duckdb

    replica, live = home / "replica", home / "audit.duckdb"
    views, script, current = replica / "audit.duckdb", replica / "views.sql", replica / "current"
    seen: dict = {"errors": [], "held": [], "switches": [], "fresh": [], "queries": 0}
    seen["live_open"] = False
    checked: tuple[int, int, int] | None = None
    while True:
        # A replica is only read again once a refresh replaced `views.sql` (by `rename`): reading
        # every snapshot's views in a new client each half second was most of this process's
        # CPU (tens of ms each, for most of the build: the first decided replica comes late).
        stamp = _stamp(script)
        if views.exists() and stamp is not None and stamp != checked:
            checked = stamp
            if _decided(script):
                break
        if stop.exists():
            return seen | {"opened": False}
        _pause(WAIT_POLL_S, stop)
    con = duckdb.connect(str(views), read_only=True)
    con.execute("BEGIN TRANSACTION")
    opened = time.monotonic()
    seen["opened"] = True
    seen["opened_on"] = os.readlink(current) if current.is_symlink() else None
    # The first switch is the snapshot opened on, recorded now: a seal finishing before the
    # first poll (two demo seals ~1 s apart, the second seal of a day with no new single-chain
    # entry) would otherwise put the newer snapshot first (CI, 2026-12-07 16:42 UTC).
    seen["switches"].append(seen["opened_on"])
    while not stop.exists():
        try:
            result = list(con.execute(SESSION_SQL).fetchall()[0])
            if result not in seen["held"]:
                seen["held"].append(result)
            seen["queries"] += 1
        except Exception as error:  # the record says what failed; the test judges it
            seen["errors"].append(f"{type(error).__name__}: {error}"[:300])
        target = os.readlink(current) if current.is_symlink() else None
        for seal in [target, *_sealed_after(replica / "snapshots", seen["opened_on"])]:
            if seal not in seen["switches"]:
                seen["switches"].append(seal)
        if seen["queries"] % FRESH_EVERY == 1:
            try:
                # `.read views.sql` in a new client: a second `connect` to `views` in this
                # process would share the held session's database instance.
                with duckdb.connect() as fresh:
                    fresh.execute(script.read_text(encoding="utf-8"))
                    seen["fresh"].append(fresh.execute(FRESH_SQL).fetchall()[0][0])
            except Exception as error:
                seen["errors"].append(f"fresh session: {type(error).__name__}: {error}"[:300])
        seen["live_open"] = seen["live_open"] or _live_open(live)
        _pause(POLL_S, stop)
    con.execute("COMMIT")
    con.close()
    seen["held_s"] = round(time.monotonic() - opened, 1)
    return seen


if __name__ == "__main__":
    home_arg, stop_arg, record_arg = (Path(a) for a in sys.argv[1:4])
    report = _watch(home_arg, stop_arg)
    record_arg.write_text(json.dumps(report, indent=1), encoding="utf-8")

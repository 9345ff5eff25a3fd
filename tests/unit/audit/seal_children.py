"""What the sealing tests' other processes run: module-level functions the test process's
forkserver forks a child for (tests/fork_server.py `ForkServer.start`, output to a file).

Each used to be a `python -c` script in a fresh interpreter importing the audit layer again
(about 1 s of CPU a child); the server imported it once. A forked child is as much another
process as a spawned one: its own DuckDB instances, file locks and token session, killed
with SIGKILL for real; it gets its home, key and step from its arguments, never from the
test's environment.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.audit import run_seal
from hitl_gate.audit.keys import load_or_create_signing_key
from hitl_gate.audit.run_segments import Segments
from hitl_gate.audit.seal import seal_run
from hitl_gate.core.db_lock import open_when_free
from hitl_gate.core.home import HitlPaths
from tests.unit.audit.tamper_home import add_rows

WAIT_SECONDS = 120  # a child waiting for the test's `go` file gives up after this


def _when(flag: Path) -> None:
    """Wait until the test creates `flag` (at most `WAIT_SECONDS`)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _connect(paths: HitlPaths) -> Callable[..., AbstractContextManager[duckdb.DuckDBPyConnection]]:
    """The writer a run's seal is given: waits its turn for the file, as a step's does."""

    def connect(attachable: tuple[Path, ...] = ()) -> Any:
        return open_when_free(paths.audit_db, False, 120, (), attachable)

    return connect


def seal_day(home: str, day: str, key_file: str, pause: str) -> None:
    """Seal domain `d`'s `day` through its run's segment; write the times it passed (JSON).

    `pause` "pause": the first run, holding its segment in step 2 (as its rendering would)
    from `<home>/ready` until the test creates `<home>/go`.
    """
    paths = HitlPaths.at(Path(home))
    segments, key = Segments(paths.segments_dir), load_or_create_signing_key(Path(key_file))
    connect = _connect(paths)
    seg, run = run_seal.segment_id("d", [day], "run-" + day), "run-" + day
    scope = run_seal.Scope("d", (date.fromisoformat(day),))
    times = {"start": time.time()}
    if pause == "pause":
        with run_seal.claim(segments, seg):
            with connect((segments.database(seg),)) as con:
                picked = run_seal.pick_rows(con, segments, seg, scope=scope)
            times["step2_start"] = time.time()
            with segments.open(seg):  # as its rendering would hold it
                (paths.home / "ready").touch()
                _when(paths.home / "go")
            run_seal.seal_picked(segments, picked, run, key)
            times["step2_end"] = time.time()
            with connect((segments.database(seg),)) as con:
                run_seal.fold_picked(con, segments, picked, key, paths.witness_dir)
    else:
        run_seal.seal_with_segment(
            connect, segments, seg, run, key, paths.checkpoints_dir, memory_limit=None,
            scope=scope,
        )  # fmt: skip
    times["end"] = time.time()
    sys.stdout.write(json.dumps(times) + "\n")  # the output file the test reads


def _die(*args: object, **kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_seal(home: str, day: str, key_file: str, point: str) -> None:
    """Seal domain `a`'s `day` as run `run-killed`, SIGKILLed at `point`: "before_pending"
    (the pick's copy committed, its pending insert not begun) or "before_fold" (the segment
    sealed, its checkpoint signed, not folded)."""
    paths = HitlPaths.at(Path(home))
    if point == "before_pending":
        opened, entered = run_seal.transaction, []

        def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[Any]:
            entered.append(con)
            if len(entered) == 2:
                _die()
            return opened(con)

        run_seal.transaction = transaction  # in this child only
    else:
        run_seal.fold_segments = _die
    run_seal.seal_with_segment(
        _connect(paths), Segments(paths.segments_dir),
        run_seal.segment_id("a", [day], "run-killed"), "run-killed",
        load_or_create_signing_key(Path(key_file)), paths.checkpoints_dir, memory_limit=None,
        scope=run_seal.Scope("a", (date.fromisoformat(day),)),
    )  # fmt: skip


def seal_own_segment(root: str, segment: str, key_file: str, wait: str) -> None:
    """Write 50 rows into `segment` and seal it, holding it open for writing throughout;
    `wait` "wait": from `<segment>.ready` until the test creates `go`."""
    segments = Segments(Path(root))
    with segments.open(segment) as con:
        add_rows(con, "reversal_requests",
                 [(i, {"domain": segment, "case_id": f"C{i}"}) for i in range(1, 51)])  # fmt: skip
        (segments.root / f"{segment}.ready").touch()
        if wait == "wait":
            _when(segments.root / "go")
        seal_run(con, f"run-{segment}", load_or_create_signing_key(Path(key_file)),
                 segments.checkpoints(segment), memory_limit=None)  # fmt: skip

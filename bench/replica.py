"""Audit replica benchmark: the refresh after a seal, incremental vs the full copy it replaced.

    python -m bench.replica [--cases 1000000] [--baseline-src DIR]

A synthetic day of N cases (`bench.audit_seal.build_day`: decisions, executions, adverse
actions, review batch cases, accounting) is sealed (`seal_run`, as every run's end does) and
the replica refreshed, then a second day of N cases is appended, sealed and refreshed, then a
seal with nothing new. Each refresh is timed on its own (wall and CPU, Parquet MB written).
On the final state, the full copy is timed twice: this tree's refresh with `reuse=False`,
and, with `--baseline-src` (e.g. `git archive <before> | tar -x -C DIR`), the refresh of
that tree (the code before this change) into a folder of its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAY_TABLES = ("decisions", "executions", "adverse_actions", "review_batch_cases")


def timed(fn: Callable[[], Any]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


def second_day(db: Path) -> None:
    """Another day of the same size: every day table's rows again under new case ids."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(db) as con:
        for table in DAY_TABLES:
            con.execute(
                f"INSERT INTO {table} SELECT * REPLACE (case_id || '-d2' AS case_id) FROM {table}"
            )
        con.execute("CHECKPOINT")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--keep", type=Path, help="build the home here and keep it")
    args = parser.parse_args(argv)

    from bench.audit_seal import build_day
    from hitl_gate.audit.keys import load_or_create_signing_key
    from hitl_gate.audit.replica import refresh_replica
    from hitl_gate.audit.seal import seal_run
    from hitl_gate.core.database import audit_connection

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-replica-"))
    db, folder = root / "audit.duckdb", root / "replica"
    key = load_or_create_signing_key(root / "secrets" / "k")
    figures: dict[str, Any] = {"cases": args.cases, "refreshes": {}}

    def seal_and_refresh(label: str) -> None:
        with audit_connection(db) as con:
            seal_run(con, f"bench-{label}", key, root / "checkpoints")
            holder: dict[str, Any] = {}
            figures["refreshes"][label] = timed(
                lambda: holder.setdefault("s", refresh_replica(con, folder))
            )
        snapshot = holder["s"]
        figures["refreshes"][label]["rows"] = sum(snapshot.rows.values())
        figures["refreshes"][label]["written_mb"] = round(
            sum(
                p.stat().st_size
                for p in snapshot.folder.glob("*.parquet")
                if p.stat().st_nlink == 1
            )
            / 1e6,
            1,
        )

    build_day(db, args.cases)
    seal_and_refresh("day 1 (first: full)")
    second_day(db)
    seal_and_refresh("day 2 (incremental)")
    seal_and_refresh("nothing new (incremental)")
    with audit_connection(db) as con:
        figures["full_this_tree"] = timed(
            lambda: refresh_replica(con, root / "full-replica", reuse=False)
        )
        if args.baseline_src is not None:
            spec = importlib.util.spec_from_file_location(
                "replica_before", args.baseline_src / "hitl_gate" / "audit" / "replica.py"
            )
            assert spec is not None and spec.loader is not None
            before = importlib.util.module_from_spec(spec)
            sys.modules["replica_before"] = before  # dataclasses look their module up
            spec.loader.exec_module(before)
            figures["full_before"] = timed(
                lambda: before.refresh_replica(con, root / "before-replica")
            )
        figures["log_rows"] = con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0]
    figures["load_avg"] = os.getloadavg()
    print("REPLICA-RESULT " + json.dumps(figures))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

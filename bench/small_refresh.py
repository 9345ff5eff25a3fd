"""The replica refresh of small homes, as the test suite and a demo pay it, this tree against a
baseline tree in the same run.

    python -m bench small_refresh --baseline-src DIR [--homes 6] [--refreshes 4] [--repeats 3]

A test home's refresh is a few rows in some fifty tables: its cost is DuckDB planning the
stamps' hashes, creating the views file and its views, not rows (session 19: about 170 ms of
CPU per refresh, 33 s over the whole suite). Each measurement is a fresh child process, run
with the tree first on `PYTHONPATH` (its `hitl_gate` and `tests`; `DIR`: e.g. `git archive
main | tar -x -C DIR`), that makes `--homes` homes (a schema-only audit file plus a decision)
and refreshes each home's replica `--refreshes` times, a decision added before each; it reports
the CPU of each refresh (user + system of the process). The first refresh of the child is
reported apart (a process's first views file makes the template). Trees alternate, medians of
`--repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.child_result import run_measuring_child

MARK = "SMALL-REFRESH-RESULT "
THIS_TREE = Path(__file__).resolve().parents[1]


def measure(homes: int, refreshes: int, work: Path) -> dict[str, Any]:
    """Child process: the refreshes' CPU seconds, the first one apart."""
    from hitl_gate.audit.replica import refresh_replica
    from hitl_gate.core.database import audit_connection
    from tests.blank_audit_db import blank_if_missing
    from tests.unit.audit.tamper_home import DOMAIN, add_row

    spent: list[float] = []
    for h in range(homes):
        db = work / f"home{h}" / "audit.duckdb"
        for n in range(refreshes):
            with audit_connection(blank_if_missing(db)) as con:
                add_row(con, "decisions", n + 1, domain=DOMAIN, case_id=f"C{n}", route="x")
                start = time.process_time()
                refresh_replica(con, db.parent / "replica")
                spent.append(time.process_time() - start)
    return {"first": spent[0], "others": spent[1:]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench small_refresh", description=__doc__)
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--homes", type=int, default=6)
    parser.add_argument("--refreshes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=1, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = measure(args.homes, args.refreshes, args.child[0])
        print(MARK + json.dumps(figures), flush=True)
        return
    trees = {"baseline": args.baseline_src.resolve(), "this tree": THIS_TREE}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for repeat in range(args.repeats):
        order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
        for name, tree in order:
            work = Path(tempfile.mkdtemp(prefix="bench-small-refresh-"))
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{THIS_TREE}"}
            command = [sys.executable, __file__, "--baseline-src", str(tree)]
            command += ["--homes", str(args.homes), "--refreshes", str(args.refreshes)]
            figures = run_measuring_child(
                ["nice", *command, "--child", str(work)], MARK, name, env=env, cwd=str(tree)
            )
            runs[name].append(figures)
            per = statistics.median(figures["others"]) * 1000
            print(f"{name} #{repeat}: first {figures['first'] * 1000:.0f} ms, then {per:.0f} ms")
    print(report(runs, args, started, load))


def report(
    runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, started: str, load: Any
) -> str:
    def median_ms(name: str, pick: str) -> float:
        values = [
            statistics.median(r["others"]) if pick == "others" else r["first"] for r in runs[name]
        ]
        return statistics.median(values) * 1000

    lines = [
        f"| refresh of a small home, CPU ms (median of {args.repeats} children, "
        f"{args.homes} homes x {args.refreshes}) | baseline | this tree | ratio |",
        "|---|---:|---:|---:|",
    ]
    for pick, label in (("first", "a process's first refresh"), ("others", "every later one")):
        base, new = median_ms("baseline", pick), median_ms("this tree", pick)
        lines.append(f"| {label} | {base:.0f} | {new:.0f} | {new / base:.2f} |")
    from bench.measure import run_conditions  # here: a child runs with the baseline's `bench`

    lines.append(run_conditions(started, load, os.getloadavg()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""CPU of the Great Expectations checks per pipeline run: `run_declared_suite` on a demo day.

`python -m bench.gx_checks --warehouse W --trees OLD NEW [--repeats 5] [--profile FILE]`

`W` is the warehouse folder of a home built by `hitl demo` (only its Parquet is read; it is
copied per tree, with a fresh GE project and Data Docs folder beside it). For each tree (a
checkout of hitl-gate, e.g. `git archive` of main and of a branch), a child process runs from
that tree with this interpreter: it imports Great Expectations, runs every shipped domain's
suites once on `DAY` (warm-up: the GE project is created, as a run's first check does), then
`--repeats` times more, each repeat every domain's suites on `DAY` as one pipeline run does.
Each repeat's CPU seconds (user + system of the process) are printed; the parent prints the
medians and the ratio new / old. Trees are measured alternately, `--rounds` times each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DAY = "2018-01-05"
MARK = "GX-CHECKS-RESULT "

_CHILD = r"""
import cProfile, json, os, sys, time
from datetime import date
from pathlib import Path
import great_expectations  # noqa: F401 - imported before the clock, once per run process
from hitl_gate.core.domain import load_domain
from hitl_gate.quality.gx_suites import GxLocations, run_declared_suite

home, day = Path(sys.argv[1]), date.fromisoformat(sys.argv[2])
repeats, profile = int(sys.argv[3]), sys.argv[4]
where = GxLocations(home, home / "data_docs", home / "warehouse")
domains = [load_domain(name) for name in ("consumer_credit", "lending_club")]

def one_run(tag):
    got = {}
    for domain in domains:
        stages = ("validated_cases", "case_features")
        for stage in stages:
            run = run_declared_suite(where, domain, stage, [day], tag)
            got[f"{domain.name}.{stage}"] = [o.__dict__ for o in run.outcomes] + [run.success]
    return got

first = one_run("warm-up")
cpu = []
profiler = cProfile.Profile(time.process_time) if profile else None
for n in range(repeats):
    start = time.process_time()
    if profiler:
        profiler.enable()
    got = one_run(f"repeat-{n}")
    if profiler:
        profiler.disable()
    cpu.append(time.process_time() - start)
    assert got == first, (got, first)
if profiler:
    profiler.dump_stats(profile)
print("GX-CHECKS-RESULT " + json.dumps({"cpu": cpu, "outcomes": first}))
"""


def measure(tree: Path, warehouse: Path, repeats: int, profile: str) -> dict:
    """One child process from `tree`: CPU seconds per repeat and the outcomes it saw."""
    with tempfile.TemporaryDirectory(prefix="gx-checks-") as tmp:
        home = Path(tmp)
        shutil.copytree(warehouse, home / "warehouse")
        for leftover in ("expectations.duckdb", "expectations.lock"):
            (home / "warehouse" / leftover).unlink(missing_ok=True)
        child = [sys.executable, "-c", _CHILD, str(home), DAY, str(repeats), profile]
        out = subprocess.check_output(
            child, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, text=True
        )
    return dict(json.loads(out.rsplit(MARK, 1)[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--trees", type=Path, nargs=2, required=True, metavar=("OLD", "NEW"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", default="", help="cProfile file prefix (new tree only)")
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    outcomes = {}
    for _ in range(args.rounds):
        for label, tree in zip(("old", "new"), args.trees, strict=True):
            profile = f"{args.profile}-{label}.prof" if args.profile else ""
            got = measure(tree.resolve(), args.warehouse.resolve(), args.repeats, profile)
            cpu[label].append(statistics.median(got["cpu"]))
            outcomes[label] = got["outcomes"]
            print(label, tree, " ".join(f"{c:.3f}" for c in got["cpu"]), flush=True)
    same = outcomes["old"] == outcomes["new"]
    old, new = statistics.median(cpu["old"]), statistics.median(cpu["new"])
    print(f"median CPU s per run (4 suites): old {old:.3f} new {new:.3f} ratio {new / old:.2f}")
    print(f"same outcomes: {same}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()

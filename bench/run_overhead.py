"""What every job run pays outside its steps' own work: definitions, instance, log capture, records.

`python -m bench.run_overhead --home H [--n 20] [--repeats 3]`

`H` is a built home (e.g. by `hitl demo`). Its Dagster home's `dagster.yaml` is first written as
this code writes a new home's (`runner.dagster_yaml`), so the storages measured are the ones a
home made by this code uses. Then, in a child process per repeat (heavy imports and the first
build untimed), `n` times each: `definitions` (`runner.load_definitions` and resolving the daily
job, as `run_job` does), `instance` (`runner.open_instance`, reading the latest run and one
asset record, which opens the run storage and the event log's index, then closing it),
`compute_logs` (capturing stdout/stderr for half a second, as the executor does for a run:
files, `tail` and watcher processes, their CPU included) and `asset_records` (each daily
stage's asset record read twice, as a day's run reads them for its steps' inputs and checks).
CPU milliseconds per iteration (this process and the children it waited for), medians over
the repeats.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from bench.child_result import run_measuring_child

RESULT_MARK = "RUN-OVERHEAD-RESULT "
DOMAIN = "consumer_credit"
CAPTURE_S = 0.5
STAGES = (
    "raw_cases", "validated_cases", "case_features", "risk_scores", "routed_decisions",
    "review_batches", "final_decisions", "audit_lineage", "decision_metrics", "trained_model",
)  # fmt: skip


def cpu_now() -> float:
    """User + system CPU seconds of this process and of its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(home: Path, n: int) -> dict[str, float]:
    """In this process: one untimed round, then `n` timed rounds of each part."""
    from dagster import AssetKey

    from hitl_gate.app.runner import load_definitions, open_instance
    from hitl_gate.core.home import HitlPaths
    from hitl_gate.core.settings import HitlSettings

    settings = HitlSettings(paths=HitlPaths.at(home))

    def definitions() -> None:
        load_definitions(settings).resolve_job_def(f"{DOMAIN}_daily")

    def instance() -> None:
        with open_instance(settings.paths) as opened:
            opened.get_run_records(limit=1)
            opened.get_asset_records([AssetKey([DOMAIN, "raw_cases"])])

    with open_instance(settings.paths) as kept:

        def compute_logs() -> None:
            with kept.compute_log_manager.capture_logs(["bench", "compute_logs", "run"]):
                time.sleep(CAPTURE_S)  # a run lasts: its processes start up fully

        def asset_records() -> None:
            for stage in (*STAGES, *STAGES):
                kept.get_asset_records([AssetKey([DOMAIN, stage])])

        parts = (
            ("definitions", definitions),
            ("instance", instance),
            ("compute_logs", compute_logs),
            ("asset_records", asset_records),
        )
        figures = {}
        for name, part in parts:
            part()
            start = cpu_now()
            for _ in range(n):
                part()
            figures[f"{name}_ms"] = round(1000 * (cpu_now() - start) / n, 2)
    figures["total_ms"] = round(sum(figures.values()), 2)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a built home")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    home = args.home.resolve()
    if args.child:
        print(RESULT_MARK + json.dumps(child(home, args.n)), flush=True)
        return
    from hitl_gate.app.runner import dagster_yaml
    from hitl_gate.core.home import HitlPaths

    folder = HitlPaths.at(home).dagster_home
    (folder / "dagster.yaml").write_text(dagster_yaml(folder), encoding="utf-8")
    command = [sys.executable, "-m", "bench.run_overhead", "--child", "--home", str(home)]
    command += ["--n", str(args.n)]
    results = [
        run_measuring_child(command, RESULT_MARK, "the measuring child")
        for _ in range(args.repeats)
    ]
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(json.dumps({"repeats": results, "median": median}))


if __name__ == "__main__":
    main()

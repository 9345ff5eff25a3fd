"""The `audit_lineage` seal through a segment plus the replica refresh, phase by phase.

    python -m bench.seal_refresh [--cases 1000000] [--repeats 3] [--baseline-src DIR]
                                 [--scenarios first second]

What a run's end does at 1M cases (`run_seal.seal_with_segment` with the replica refreshed
after the fold, as `execution.accounting.account_days` does), on a synthetic day
(`bench.audit_seal.build_day`: decisions, executions, adverse actions, review batch cases,
accounting), timed per phase in CPU seconds (user + system of the process, every thread) and
wall: the single chain's seal (the insert-once tables), the pick, the segment's seal, the
fold, the replica refresh. Scenarios: `first`, the day sealed into a home with no replica yet
(the refresh writes every table); `second`, the day sealed and refreshed once (untimed), a
second day of the same size added, then sealed and refreshed (timed: an incremental refresh).
Each measurement runs in a fresh child process on a copy of the same template; with
`--baseline-src` (e.g. `git archive <before> | tar -x -C DIR`) the same child runs that tree's
code as mode `baseline`, alternating with this tree's, so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

RESULT_MARK = "SEAL-REFRESH-RESULT "
SCENARIOS = ("first", "second")
PHASES = ("pick", "segment_seal", "fold", "refresh")


def _clock() -> tuple[float, float]:
    from bench.measure import cpu_seconds

    return cpu_seconds(), time.perf_counter()


def _timed(phases: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, adding its CPU and wall seconds to `phases[name]` on every call."""

    def run(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = _clock()
        try:
            return fn(*args, **kwargs)
        finally:
            end_cpu, end_wall = _clock()
            spent = phases.setdefault(name, [0.0, 0.0])
            spent[0] += end_cpu - cpu
            spent[1] += end_wall - wall

    return run


def measure(scenario: str, work: Path) -> dict[str, Any]:
    """Child process: the scenario's seal and refresh on `work/audit.duckdb`, timed."""
    from bench.measure import peak_rss_mb
    from bench.replica import second_day
    from hitl_gate.audit import run_seal
    from hitl_gate.audit.keys import load_or_create_signing_key
    from hitl_gate.audit.replica import refresh_replica
    from hitl_gate.audit.run_segments import Segments
    from hitl_gate.core.database import audit_connection

    db = work / "audit.duckdb"
    key = load_or_create_signing_key(work / "secrets" / "k")
    segments = Segments(work / "segments")
    phases: dict[str, list[float]] = {}

    def seal(run_id: str) -> int:
        return run_seal.seal_with_segment(
            partial(audit_connection, db), segments, f"consumer_credit.{run_id}", run_id, key,
            work / "checkpoints", owned={},
            after=_timed(phases, "refresh", lambda con: refresh_replica(
                con, work / "replica", segments=segments)),
        ).appended  # fmt: skip

    if scenario == "second":
        seal("run-1")
        second_day(db)
        phases.clear()
    for name, attribute in (("pick", "pick_rows"), ("segment_seal", "seal_picked"),
                            ("fold", "fold_picked")):  # fmt: skip
        setattr(run_seal, attribute, _timed(phases, name, getattr(run_seal, attribute)))
    cpu, wall = _clock()
    appended = seal("run-2")
    end_cpu, end_wall = _clock()
    total = [end_cpu - cpu, end_wall - wall]
    chain = [total[i] - sum(spent[i] for spent in phases.values()) for i in (0, 1)]
    return {
        "scenario": scenario,
        "appended": appended,
        "cpu_s": total[0],
        "wall_s": total[1],
        "phases_cpu": {"chain_seal": chain[0], **{k: v[0] for k, v in phases.items()}},
        "phases_wall": {"chain_seal": chain[1], **{k: v[1] for k, v in phases.items()}},
        "peak_rss_mb": peak_rss_mb(),
    }


def _child(mode: str, scenario: str, template: Path, work: Path, baseline: Path | None) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(template, work / "audit.duckdb")
    command = [sys.executable, "-m", "bench.seal_refresh", "_measure", scenario, str(work)]
    env, cwd = None, None
    if mode == "baseline":
        assert baseline is not None, "--baseline-src is needed for the baseline mode"
        env, cwd = {**os.environ, "PYTHONPATH": str(baseline)}, str(baseline)
        # The baseline tree may predate this benchmark: run this file from it.
        shutil.copy(Path(__file__), baseline / "bench" / "seal_refresh.py")
    # Imported here, in the parent only: the child may run this file from an older tree,
    # which need not have the helper.
    from bench.child_result import run_measuring_child

    try:
        figures = run_measuring_child(command, RESULT_MARK, f"{mode} {scenario}", env=env, cwd=cwd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**figures, "mode": mode}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _row(r: dict) -> str:
    phases = " ".join(f"{k} {v:.2f}" for k, v in r["phases_cpu"].items())
    return (
        f"{r['cpu_s']:6.2f} s CPU {r['wall_s']:6.2f} s wall ({phases}) "
        f"RSS {r['peak_rss_mb']:,.0f} MB, {r['appended']:,} entries, load {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":
        print(RESULT_MARK + json.dumps(measure(argv[1], Path(argv[2]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="source tree of the `baseline` mode")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--tmp", type=Path, help="where the template and copies go")
    args = parser.parse_args(argv)
    from bench.audit_seal import build_day

    modes = ["baseline", "this"] if args.baseline_src is not None else ["this"]
    with tempfile.TemporaryDirectory(prefix="hitl-bench-seal-refresh-", dir=args.tmp) as tmp:
        template = Path(tmp) / "template.duckdb"
        build_day(template, args.cases)
        _say(f"{args.cases:,} cases of lineage built; load {os.getloadavg()}")
        results: dict[tuple[str, str], list[dict]] = {}
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for mode in modes if repeat % 2 == 0 else list(reversed(modes)):
                    r = _child(mode, scenario, template, Path(tmp) / "work", args.baseline_src)
                    results.setdefault((mode, scenario), []).append(r)
                    _say(f"  {mode:<8} {scenario:<6} {_row(r)}")
        _say("medians (CPU s; wall s):")
        for scenario in args.scenarios:
            medians = {}
            for mode in modes:
                runs = results[(mode, scenario)]
                cpu = statistics.median(r["cpu_s"] for r in runs)
                medians[mode] = cpu
                phases = {
                    name: statistics.median(r["phases_cpu"].get(name, 0.0) for r in runs)
                    for name in ("chain_seal", *PHASES)
                }
                wall = statistics.median(r["wall_s"] for r in runs)
                cells = " ".join(f"{k} {v:.2f}" for k, v in phases.items())
                _say(f"  {scenario:<6} {mode:<8} {cpu:6.2f} CPU {wall:6.2f} wall ({cells})")
            if "baseline" in medians:
                ratio = medians["this"] / medians["baseline"]
                _say(f"  {scenario:<6} this / baseline (CPU, medians): {ratio:.3f}")


if __name__ == "__main__":
    main()

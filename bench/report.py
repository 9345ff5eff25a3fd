"""CPU of the operations report's rendering: the code at a baseline commit against this tree.

`python -m bench.report [--base 2eed2de] [--repeats 5]`

A demo-sized metrics frame (one run day, and a 90-day period: three routes, eight stages, a
dozen reviewers and queues, 40 protected groups over four stages, 20 drifting features) is
rendered as `write_run_report` renders it: the run view and the period view. Each code tree
(the baseline commit's `hitl_gate`, extracted with `git archive`, and this tree's) runs in its
own child process; the children take turns, and each reports the CPU seconds of its first
render (imports and Plotly's template included) and the median of `repeats` later ones, the
same process state for both trees. The section is printed; append it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.measure import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
LAST_DAY = date(2024, 6, 30)
MARK = "REPORT-BENCH "


def demo_sized_metrics(days: int):  # -> pl.DataFrame (Polars imported in the child only)
    """The long `decision_metrics` rows of `days` days ending on `LAST_DAY`."""
    import polars as pl

    rows: list[tuple[date, str, str, str, float]] = []
    for i in range(days):
        day = LAST_DAY - timedelta(days=i)
        for r, route in enumerate(("auto_approve", "human_review", "decline")):
            rows += [(day, "cases", "route", route, 100.0 + r + i % 7),
                     (day, "rate", "route", route, (r + 1) / 6)]  # fmt: skip
        rows.append((day, "rate", "final_action", "approve", 0.6))
        for s in range(8):
            rows += [(day, f"stage_latency_p{p}_s", "stage", f"stage{s}", s + p / 10 + i % 3)
                     for p in (50, 95, 99)]  # fmt: skip
        for route in ("auto_approve", "human_review"):
            rows += [(day, f"time_to_decision_{q}_s", "route", route, 60.0 + i)
                     for q in ("p50", "p95", "max")]  # fmt: skip
        for n in range(12):
            rows += [(day, "reviewed", "reviewer", f"rev{n}", 20.0 + n),
                     (day, "overrides", "reviewer", f"rev{n}", float(n % 4)),
                     (day, "queue_depth", "queue", f"q{n}", float(n + i % 5)),
                     (day, "sla_breaches", "queue", f"q{n}", float(n % 3))]  # fmt: skip
        for a in range(10):
            for key in range(4):
                rows += [(day, "fairness_air", f"attr{a}@{stage}", f"g{key}", 0.7 + key / 10)
                         for stage in ("model_band", "policy_route", "human_verdict",
                                       "final_action")]  # fmt: skip
    schema = {"partition_date": pl.Date, "metric": pl.String, "dimension": pl.String,
              "key": pl.String, "value": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def child(repeats: int) -> None:
    """Render both views `repeats + 1` times; print the CPU seconds of each round."""
    import polars as pl

    from hitl_gate.observability.anomalies import Finding
    from hitl_gate.observability.report import PERIOD, RUN, render_report

    drift = pl.DataFrame({"feature": [f"f{n}" for n in range(20)], "psi": [0.02 * n for n in
                          range(20)], "noise_floor": [0.01] * 20})  # fmt: skip
    findings = [Finding("feature_drift_psi", False, "ERROR", "drift", drift)]
    run, period = demo_sized_metrics(1), demo_sized_metrics(90)
    period_days = sorted(set(period["partition_date"].to_list()))
    common = {"domain": "demo", "run_id": "r", "as_of": datetime(2024, 7, 1, tzinfo=UTC),
              "findings": findings, "links": {"audit": "audit.duckdb"}}  # fmt: skip
    rounds, size = [], 0
    for _ in range(repeats + 1):
        start = cpu_seconds()
        size = len(render_report(days=[LAST_DAY], metrics=run, view=RUN, **common))
        size += len(render_report(days=period_days, metrics=period, view=PERIOD, **common))
        rounds.append(cpu_seconds() - start)
    import hitl_gate

    print(MARK + json.dumps({"rounds": rounds, "bytes": size, "code": hitl_gate.__file__}))


def measure(code: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-m", "bench.report", "--child", str(repeats)],
        env=env, cwd=code, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(next(line for line in out.splitlines() if line.startswith(MARK))[len(MARK) :])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="2eed2de")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        archive = base / "base.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), args.base,
                        "hitl_gate"], check=True)  # fmt: skip
        with tarfile.open(archive) as tar:
            tar.extractall(base, filter="data")
        results: dict[str, list[dict]] = {"base": [], "new": []}
        for _ in range(args.turns):
            results["base"].append(measure(base, args.repeats))
            results["new"].append(measure(ROOT, args.repeats))
    report(results, args)


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    def first(name: str) -> float:
        return statistics.median(r["rounds"][0] for r in results[name])

    def later(name: str) -> float:
        return statistics.median(t for r in results[name] for t in r["rounds"][1:])

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"code: base {results['base'][0]['code']}, new {results['new'][0]['code']}")
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"{when}, load average {load}, {os.cpu_count()} CPUs; {args.turns} turns per tree,",
          f"{args.repeats} renders after the first per turn")  # fmt: skip
    print("| render (run + period view) | base CPU s | new CPU s | new / base |")
    print("|---|---|---|---|")
    for label, f in (("first in a process", first), ("later (median)", later)):
        print(f"| {label} | {f('base'):.3f} | {f('new'):.3f} | {f('new') / f('base'):.2f} |")
    print(
        f"bytes of both documents: base {results['base'][0]['bytes']:,}, "
        f"new {results['new'][0]['bytes']:,}"
    )


if __name__ == "__main__":
    main()

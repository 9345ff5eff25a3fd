"""Benchmark: DuckDB instances built and audit files attached per `hitl demo --jobs 1`, and its
CPU, for this tree against a baseline tree (session 17: audit connections on kept instances).

`python -m bench audit_opens --baseline DIR [--repeats R] [--workdir DIR]`. `DIR` is another
checkout of the repository (e.g. `git archive main | tar -x -C DIR`); both run with this
environment's packages, each tree first on `PYTHONPATH`, alternating which goes first. Every
process of a run counts its `duckdb.connect` calls (a new DuckDB instance each, or a share of
one already open on the file) and its `kept_instance` attaches through a `sitecustomize` the
benchmark writes; both trees pay the counter alike. Prints a Markdown section (medians of R).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.measure import run_conditions

HITL = Path(sys.executable).with_name("hitl")
THIS_TREE = Path(__file__).resolve().parents[1]

COUNTER = """
import os
_log = os.environ.get("BENCH_DUCKDB_COUNT")
if _log:
    import duckdb
    _connect = duckdb.connect
    def _counted(database=":memory:", *args, **kwargs):
        with open(_log, "a") as f:
            f.write(f"connect {database}\\n")
        return _connect(database, *args, **kwargs)
    duckdb.connect = _counted
    try:
        from hitl_gate.core import kept_instance
    except ImportError:
        kept_instance = None
    if kept_instance is not None:
        _attach = kept_instance._attach
        def _attached(instance, read_only):
            with open(_log, "a") as f:
                f.write(f"attach {instance.path}\\n")
            return _attach(instance, read_only)
        kept_instance._attach = _attached
"""


def run(tree: Path, home: Path, site: Path, log: Path) -> tuple[float, Counter[str]]:
    """CPU seconds of `nice hitl --home home demo --jobs 1` run from `tree` (itself and every
    process it waited for), and its counted opens by kind."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{tree}{os.pathsep}{site}",
        "BENCH_DUCKDB_COUNT": str(log),
        "HITL_LANDING_DIR": str(home.with_name(f"{home.name}-landing")),
        "HITL_REVIEW_DIR": str(home.with_name(f"{home.name}-review")),
        "DAGSTER_HOME": str(home.with_name(f"{home.name}-dagster")),
    }
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            ["nice", str(HITL), "--home", str(home), "demo", "--jobs", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tree,
        )
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            out.seek(0)
            raise SystemExit(f"hitl demo failed in {tree}: {out.read()[-2000:]}")
    lines = log.read_text().splitlines() if log.exists() else []
    kinds = Counter(
        "audit file attaches" if kind == "attach" else
        "duckdb.connect, audit file" if target.endswith("audit.duckdb") else
        "duckdb.connect, other"
        for kind, target in (line.split(" ", 1) for line in lines)
    )  # fmt: skip
    return usage.ru_utime + usage.ru_stime, kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench audit_opens", description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-audit-opens-"))
    site = work / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(COUNTER, encoding="utf-8")
    trees = {"baseline": args.baseline.resolve(), "this tree": THIS_TREE}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    results: dict[str, list[tuple[float, Counter[str]]]] = {name: [] for name in trees}
    for repeat in range(args.repeats):
        order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
        for name, tree in order:
            tag = f"{'base' if name == 'baseline' else 'new'}{repeat}"
            cpu, kinds = run(tree, work / tag / "home", site, work / f"{tag}.count")
            results[name].append((cpu, kinds))
            print(f"{name} #{repeat}: {cpu:.1f} s CPU, {dict(kinds)}", flush=True)
    print(report(results, started, load, os.getloadavg()))


def report(
    results: dict[str, list[tuple[float, Counter[str]]]],
    started: str,
    load: tuple[float, float, float],
    end_load: tuple[float, float, float],
) -> str:
    kinds = sorted({kind for runs in results.values() for _, c in runs for kind in c})
    lines = [
        f"| `hitl demo --jobs 1` (median of {len(results['baseline'])}) | baseline | this tree "
        "| ratio |",
        "|---|---:|---:|---:|",
    ]
    medians = {n: statistics.median(cpu for cpu, _ in runs) for n, runs in results.items()}
    lines.append(
        f"| CPU s (user + sys, every process) | {medians['baseline']:.1f} | "
        f"{medians['this tree']:.1f} | {medians['this tree'] / medians['baseline']:.2f} |"
    )
    for kind in kinds:
        base, new = (statistics.median(c[kind] for _, c in results[n]) for n in results)
        lines.append(f"| {kind} | {base:g} | {new:g} | |")
    lines.append(run_conditions(started, load, end_load))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark: `make demo` (`hitl demo`, every shipped domain, fresh home), domains side by side vs
one after the other.

`python -m bench demo [--repeats R] [--workdir DIR]`. Each repeat runs `hitl --home <fresh>
demo --jobs 2` and `--jobs 1` as subprocesses (`nice`d), alternating which goes first, and
records wall seconds, CPU seconds (user and system of the process and every process it waited
for: the spawned domain processes), peak RSS of the largest process and the load average at
the start. Then it checks that every home says the same thing: the printed output (the home's
path, the checkpoint public key and the elapsed seconds aside), the row counts of every audit
table and `hitl audit verify`. Prints a Markdown section for BENCHMARKS.md (medians of R).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODES = {"side by side (--jobs 2)": 2, "one after the other (--jobs 1)": 1}
HITL = Path(sys.executable).with_name("hitl")
_KEY = re.compile(r"\b[0-9a-f]{64}\b")
_ELAPSED = re.compile(r"Demo finished in \d+ s\.")


@dataclass(frozen=True)
class DemoRun:
    mode: str
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    load: float
    output: str
    home: Path

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def normalise(text: str, home: Path) -> str:
    """The output with what differs between fresh homes by design replaced."""
    text = text.replace(str(home), "<home>")
    return _ELAPSED.sub("Demo finished.", _KEY.sub("<public key>", text))


def table_counts(home: Path) -> dict[str, int]:
    """Rows of every table of the home's audit database."""
    import duckdb

    with duckdb.connect(str(home / "audit.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}


def verify(home: Path) -> bool:
    done = subprocess.run(
        [str(HITL), "--home", str(home), "audit", "verify"], capture_output=True, text=True
    )
    return done.returncode == 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench demo", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where the fresh homes go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    runs: list[DemoRun] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for repeat in range(args.repeats):
        order = list(MODES.items())
        for mode, jobs in order if repeat % 2 == 0 else order[::-1]:
            home = work / f"{'par' if jobs > 1 else 'seq'}{repeat}"
            shutil.rmtree(home, ignore_errors=True)
            run = run_demo(home, jobs, mode)
            runs.append(run)
            print(f"{mode}: {run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU, load {run.load:.1f}")
    text = report(runs, started, work)
    print(text)
    if not args.keep and "(homes kept in" not in text:
        shutil.rmtree(work, ignore_errors=True)


def run_demo(home: Path, jobs: int, mode: str) -> DemoRun:
    """`nice hitl --home home demo --jobs jobs`: its figures (`wait4`: the usage of the process
    and of every process it waited for) and its normalised output."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            ["nice", str(HITL), "--home", str(home), "demo", "--jobs", str(jobs)],
            stdout=out,
            stderr=err,
            text=True,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    home.with_name(f"{home.name}.out").write_text(stdout, encoding="utf-8")  # beside the home
    if process.returncode != 0:
        raise SystemExit(f"{mode}: hitl demo failed ({process.returncode}): {stderr[-2000:]}")
    return DemoRun(
        mode, wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, load,
        normalise(stdout, home), home,
    )  # fmt: skip


def report(runs: list[DemoRun], started: str, work: Path) -> str:
    """The Markdown section: medians per mode, the ratio, and the equality checks."""
    lines = [
        f"### `make demo`, domains side by side vs one after the other — {started} "
        f"(python -m bench demo, {os.cpu_count()} cores)",
        "",
        "| mode | runs | wall s (median) | CPU s (median) | user / sys s | peak RSS MB | "
        "load at start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    medians = {}
    for mode in MODES:
        mine = [r for r in runs if r.mode == mode]
        wall = statistics.median(r.wall_s for r in mine)
        cpu = statistics.median(r.cpu_s for r in mine)
        medians[mode] = (wall, cpu)
        lines.append(
            f"| {mode} | {len(mine)} | {wall:.1f} | {cpu:.1f} | "
            f"{statistics.median(r.user_s for r in mine):.1f} / "
            f"{statistics.median(r.sys_s for r in mine):.1f} | "
            f"{max(r.peak_rss_mb for r in mine):.0f} | "
            f"{', '.join(f'{r.load:.1f}' for r in mine)} |"
        )
    (par_wall, par_cpu), (seq_wall, seq_cpu) = medians.values()
    outputs = {r.output for r in runs}
    counts = [table_counts(r.home) for r in runs]
    verified = [verify(r.home) for r in runs]
    differing = sorted({t for c in counts for t in c if c.get(t) != counts[0].get(t)})
    same_counts = (
        "yes"
        if not differing
        else "all but "
        + "; ".join(f"{t} ({', '.join(str(c.get(t)) for c in counts)})" for t in differing)
    )
    lines += [
        "",
        f"Side by side / one after the other: wall {par_wall / seq_wall:.2f}x, "
        f"CPU {par_cpu / seq_cpu:.2f}x.",
        f"Every run printed the same output (home path, public key, seconds aside): "
        f"{'yes' if len(outputs) == 1 else f'NO ({len(outputs)} variants)'}; "
        f"same row count in every audit table: {same_counts} "
        f"({len(counts[0])} tables, {sum(counts[0].values()):,} rows); "
        f"`hitl audit verify` green: {sum(verified)} of {len(verified)}.",
    ]
    if len(outputs) > 1 or differing:
        lines.append(f"(homes kept in {work} to compare)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

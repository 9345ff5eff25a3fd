"""A 90-day backfill three ways: one run for the range, one run per day, runs per day in parallel.

`python -m bench backfill [--workers 2]`

The home is prepared like `hitl demo` (the real sample's 90 days of 2018 Q1 landed and
ingested, a champion trained); then the daily job processes the whole quarter (a) as one
single-run backfill, (b) as 90 partition runs one after another, (c) as 90 partition runs on
`--workers` processes at once, each run in process via `hitl_gate.app.runner.run_job` against
the same Dagster instance. Each way starts from the same prepared home (copied), so none
benefits from another's outputs. Failed runs are counted and their first error reported.
Concurrent runs share one DuckDB audit file, which allows one writing process at a time: the
`AuditDatabase` resource waits for the lock (`lock_wait_s`) so runs take turns on their
short-lived connections. The report shows how many runs were in progress at once.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from bench.homes import copy_home
from bench.pipeline import DOMAIN, append_report, setup_home

SECTION_LABEL = "Backfill (days of the real sample, 2018 Q1)"
FIRST, LAST = date(2018, 1, 1), date(2018, 3, 31)


@dataclass(frozen=True)
class RunSpan:
    """One Dagster run of the backfill: its days, when it ran, in which process, its outcome."""

    first: date
    last: date
    started: float
    ended: float
    pid: int
    ok: bool
    error: str = ""


def _run_days(home: Path, days: list[date], as_range: bool) -> list[RunSpan]:
    """Run the daily job over `days` in this process, one run for the range or one per day."""
    import os

    from hitl_gate.app.runner import run_job
    from hitl_gate.core.domain import load_domain
    from hitl_gate.core.settings import HitlSettings
    from pipelines.jobs import daily_job_name

    settings = HitlSettings.from_environ(os.environ, home=home)
    job = daily_job_name(load_domain(DOMAIN))
    spans = [(days[0], days[-1])] if as_range else [(d, d) for d in days]
    out = []
    for start, end in spans:
        began = time.time()
        result = run_job(settings, job, start=start, end=end)
        error = next(
            (
                e.event_specific_data.error.message.strip()[:160]
                for e in result.all_events
                if e.is_step_failure
            ),
            "",
        )
        out.append(RunSpan(start, end, began, time.time(), os.getpid(), result.success, error))
    return out


def max_overlap(spans: list[RunSpan]) -> int:
    """The largest number of runs in progress at the same moment (1 = strictly serial)."""
    edges = sorted([(s.started, 1) for s in spans] + [(s.ended, -1) for s in spans])
    current = best = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def _fresh_copy(prepared: Path, target: Path) -> Path:
    return copy_home(prepared, target)


def _row(way: str, wall: float, spans: list[RunSpan]) -> dict:
    errors = [f"{s.first}: {s.error}" for s in spans if not s.ok]
    return {
        "way": way,
        "wall_s": wall,
        "runs": len(spans),
        "ok": sum(s.ok for s in spans),
        "processes": len({s.pid for s in spans}),
        "max_overlap": max_overlap(spans),
        "first_failure": _first(errors),
    }


WAYS = ("range", "serial", "parallel")


def measure(
    prepared: Path, scratch: Path, workers: int, days: list[date], ways: tuple[str, ...] = WAYS
) -> list[dict]:
    """Wall seconds, runs, runs ok, processes and overlap for each of the chosen ways."""
    rows = []
    if "range" in ways:
        home = _fresh_copy(prepared, scratch / "range")
        started = time.perf_counter()
        spans = _run_days(home, days, as_range=True)
        rows.append(_row("one run for the range", time.perf_counter() - started, spans))
    if "serial" in ways:
        home = _fresh_copy(prepared, scratch / "serial")
        started = time.perf_counter()
        spans = _run_days(home, days, as_range=False)
        rows.append(_row("a run per day, serial", time.perf_counter() - started, spans))
    if "parallel" in ways:
        rows.append(_measure_parallel(_fresh_copy(prepared, scratch / "parallel"), workers, days))
    return rows


def _measure_parallel(home: Path, workers: int, days: list[date]) -> dict:
    """A run per day on `workers` processes against one home and Dagster instance."""
    # Contiguous blocks per worker keep each worker's days in order (trailing-window checks).
    size = -(-len(days) // workers)
    shares = [days[i : i + size] for i in range(0, len(days), size)]
    started = time.perf_counter()
    # spawn, not fork: the parent holds Dagster, DuckDB and SQLite state and threads.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(shares), mp_context=spawn) as pool:
        results = list(pool.map(_run_days, [home] * len(shares), shares, [False] * len(shares)))
    wall = time.perf_counter() - started
    spans = [s for r in results for s in r]
    return _row(f"a run per day, {len(shares)} processes", wall, spans)


def _first(errors: list[str]) -> str:
    return errors[0].replace("|", "/").replace("\n", " ") if errors else ""


def markdown(rows: list[dict], days: list[date]) -> str:
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M} {SECTION_LABEL}: {days[0]}..{days[-1]}",
        "",
        f"{len(days)} days of the real sample; load average at the end {load} (2 cores, shared). "
        "`max overlap` = most runs in progress at one moment (from each run's start and end).",
        "",
        "| way | wall s | runs | runs ok | processes | max overlap | first failure |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(
            f"| {r['way']} | {r['wall_s']:.1f} | {r['runs']} | {r['ok']} | {r['processes']} | "
            f"{r['max_overlap']} | {r['first_failure']} |"
            for r in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench backfill", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--days", type=int, default=90, help="the first N days of the quarter")
    parser.add_argument(
        "--ways", nargs="+", choices=WAYS, default=list(WAYS),
        help="which ways to run (the serial one takes longest)",
    )  # fmt: skip
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    total = (LAST - FIRST).days + 1
    days = [FIRST + timedelta(days=i) for i in range(min(args.days, total))]
    with tempfile.TemporaryDirectory(prefix="hitl-backfill-") as tmp:
        prepared = Path(tmp) / "prepared"
        setup_home(prepared)
        rows = measure(prepared, Path(tmp), args.workers, days, tuple(args.ways))
    text = markdown(rows, days)
    sys.stdout.write(text)
    if not args.no_report:
        append_report(text)


if __name__ == "__main__":
    main()

"""A 90-day backfill three ways: one run for the range, one run per day, runs per day in parallel.

`python -m bench backfill [--workers 2]`

The home is prepared like `hitl demo` (the real sample's 90 days of 2018 Q1 landed and
ingested, a champion trained); then the daily job processes the whole quarter (a) as one
single-run backfill, (b) as 90 partition runs one after another, (c) as 90 partition runs on
`--workers` processes at once, each run in process via `hitl_gate.runner.run_job` against
the same Dagster instance. Each way starts from the same prepared home (copied), so none
benefits from another's outputs. Failed runs are counted and their first error reported:
concurrent writers to one DuckDB audit file are expected to collide (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

from bench.pipeline import DOMAIN, append_report, setup_home

SECTION_LABEL = "Backfill (90 days of the real sample, 2018-01-01..2018-03-31)"
FIRST, LAST = date(2018, 1, 1), date(2018, 3, 31)


def _run_days(home: Path, days: list[date], as_range: bool) -> tuple[int, list[str]]:
    """Run the daily job over `days` in this process; return (runs ok, first errors)."""
    from hitl_gate.domain import load_domain
    from hitl_gate.home import HitlPaths
    from hitl_gate.runner import load_definitions, run_job, use_paths
    from pipelines.jobs import daily_job_name

    use_paths(HitlPaths.from_env(home))
    defs = load_definitions()
    job = daily_job_name(load_domain(DOMAIN))
    spans = [(days[0], days[-1])] if as_range else [(d, d) for d in days]
    ok, errors = 0, []
    for start, end in spans:
        result = run_job(defs, job, start=start, end=end)
        if result.success:
            ok += 1
            continue
        for event in result.all_events:
            if event.is_step_failure:
                errors.append(f"{start}: {event.event_specific_data.error.message.strip()[:160]}")
                break
    return ok, errors


def _fresh_copy(prepared: Path, target: Path) -> Path:
    shutil.copytree(prepared, target, symlinks=True)
    return target


def measure(prepared: Path, scratch: Path, workers: int) -> list[tuple[str, float, int, int, str]]:
    """(way, wall seconds, runs, runs ok, first error) for each of the three ways."""
    days = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    rows = []
    home = _fresh_copy(prepared, scratch / "range")
    started = time.perf_counter()
    ok, errors = _run_days(home, days, as_range=True)
    rows.append(("one run for the range", time.perf_counter() - started, 1, ok, _first(errors)))

    home = _fresh_copy(prepared, scratch / "serial")
    started = time.perf_counter()
    ok, errors = _run_days(home, days, as_range=False)
    rows.append(
        ("a run per day, serial", time.perf_counter() - started, len(days), ok, _first(errors))
    )

    home = _fresh_copy(prepared, scratch / "parallel")
    shares = [days[i::workers] for i in range(workers)]
    started = time.perf_counter()
    # spawn, not fork: the parent holds Dagster, DuckDB and SQLite state and threads.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        results = list(pool.map(_run_days, [home] * workers, shares, [False] * workers))
    wall = time.perf_counter() - started
    ok = sum(r[0] for r in results)
    errors = [e for r in results for e in r[1]]
    rows.append((f"a run per day, {workers} processes", wall, len(days), ok, _first(errors)))
    return rows


def _first(errors: list[str]) -> str:
    return errors[0].replace("|", "/").replace("\n", " ") if errors else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench backfill", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hitl-backfill-") as tmp:
        prepared = Path(tmp) / "prepared"
        setup_home(prepared)
        rows = measure(prepared, Path(tmp), args.workers)
    lines = [
        f"### {SECTION_LABEL}",
        "",
        "| way | wall s | runs | runs ok | first failure |",
        "|---|---:|---:|---:|---|",
        *(f"| {w} | {s:.1f} | {n} | {k} | {e} |" for w, s, n, k, e in rows),
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if not args.no_report:
        append_report(text)


if __name__ == "__main__":
    main()

"""Benchmark of the daily pipeline against the honest floor and the old baseline, in one run.

`python -m bench pipeline --rows 100000 1000000 [--repeats 3] [--profile]`

One temporary home is prepared like `hitl demo` does (the real sample landed, ingested and a
champion trained), then for each size and repeat a fresh partition day of synthetic
applications is generated (`bench.generate`) and processed three times, each in its own child
process so peak RSS is that run's: once by the real Dagster job (`hitl_gate.app.runner.run_job`,
in process, every stage from landing files to the audit accounting and the signed review
batches), once by `bench.floor` (the baseline plus the chain, the signed checkpoint, the
blocking expectations and the day's metrics: the work no deployment may skip) and once by the
old `bench.baseline` (deciding only). Heavy libraries are imported before the clock starts in
every mode, so the figures compare work, not import time. The day's files are removed after
each repeat so every repeat sees the same history. Results (medians, per-stage times from
Dagster's step events, rows/s, peak RSS, the ratios to the floor and to the old baseline) are
printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from bench.child_result import run_measuring_child
from bench.measure import (
    RunFigures,
    cpu_seconds,
    peak_rss_mb,
    stage_name,
    step_cpu,
    step_windows,
)
from bench.memory import RssSampler

DOMAIN = "consumer_credit"
# The synthetic days take the last days of the sample's data window (the daily partitions end
# with it: domains/consumer_credit/domain.yaml); the bench home's history stops before them.
FIRST_BENCH_DAY = date(2018, 3, 18)
RESULT_MARK = "BENCH-RESULT "
REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
SECTION = "## Pipeline"
T = TypeVar("T")


def _warm_imports() -> None:
    """Import what the stages import lazily, so neither mode's clock includes import time."""
    import feast  # noqa: F401
    import mlflow.pyfunc  # noqa: F401
    import openpyxl  # noqa: F401
    import pandera.polars  # noqa: F401
    import sklearn.pipeline  # noqa: F401


def _settings(home: Path):
    """The deployment's settings (`HITL_*`, e.g. the executor or slice size) rooted at `home`."""
    import os

    from hitl_gate.core.settings import HitlSettings

    return HitlSettings.from_environ(os.environ, home=home)


def setup_home(home: Path) -> None:
    """Land the real sample, ingest the quarter and train a champion, as `hitl demo` does."""
    from assets.common import stage_key
    from hitl_gate.app.demo import INGEST_STAGES, has_champion
    from hitl_gate.app.demo_data import prepare_landing
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.core.domain import load_domain
    from pipelines.jobs import daily_job_name, training_job_name

    settings = _settings(home)
    paths = settings.paths
    domain = load_domain(DOMAIN)
    landed = prepare_landing(domain, paths.landing)
    start = date.fromisoformat(landed.first_day)
    end = FIRST_BENCH_DAY - timedelta(days=1)
    for folder in (paths.landing / domain.landing_subdir).iterdir():
        if folder.name >= FIRST_BENCH_DAY.isoformat():  # left for the synthetic days
            shutil.rmtree(folder)
    only = [stage_key(domain, s) for s in INGEST_STAGES]
    raise_for_failure(
        run_job(settings, daily_job_name(domain), start=start, end=end, only=only), "bench setup"
    )
    if not has_champion(domain, paths):
        raise_for_failure(run_job(settings, training_job_name(domain)), "bench training")


def _timed(
    mode: str, rows: int, profile: Path | None, work: Callable[[], T]
) -> tuple[RunFigures, T]:
    """`work()` in this process after warming the imports, timed (wall and CPU, imports
    excluded) and profiled if asked: the one measurement every mode goes through. Returns
    the figures (ok, no note) and what `work` returned."""
    _warm_imports()
    profiler = _start_profiler(profile)
    cpu = cpu_seconds()
    started = time.perf_counter()
    value = work()
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    _stop_profiler(profiler, profile)
    return RunFigures(mode, rows, wall, cpu, peak_rss_mb()), value


def measure_pipeline(home: Path, day: date, rows: int, profile: Path | None) -> RunFigures:
    """The real daily job for `day`, in process; stage wall times from the run's event log,
    stage CPU seconds from the process's CPU clock sampled across those windows (`step_cpu`)."""
    from hitl_gate.app.runner import open_instance, run_job
    from hitl_gate.core.domain import load_domain
    from pipelines.jobs import daily_job_name

    settings = _settings(home)
    job = daily_job_name(load_domain(DOMAIN))
    clock = RssSampler().start()  # no limit: the CPU clock (and RSS) only
    try:
        figures, result = _timed(
            "pipeline", rows, profile, lambda: run_job(settings, job, start=day, end=day)
        )
    finally:
        clock.stop()
    with open_instance(settings.paths) as instance:
        windows = step_windows(instance.all_logs(result.run_id))
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    return replace(
        figures,
        stages={stage_name(k): end - start for k, (start, end) in windows.items()},
        stage_cpu=step_cpu(clock.cpu, windows),
        ok=result.success,
        note=f"failed steps: {failed}" if failed else "",
    )


def measure_baseline(home: Path, day: date, rows: int, profile: Path | None) -> RunFigures:
    """The hand-written baseline for `day` in this process."""
    from bench.baseline import run_baseline
    from hitl_gate.core.domain import load_domain

    paths = _settings(home).paths
    domain = load_domain(DOMAIN)

    def work() -> dict:
        with tempfile.TemporaryDirectory(prefix="hitl-baseline-") as scratch:
            return run_baseline(paths, domain, day, Path(scratch))

    figures, counts = _timed("baseline", rows, profile, work)
    return replace(figures, note=str(counts))


def measure_floor(home: Path, day: date, rows: int, profile: Path | None) -> RunFigures:
    """The honest floor for `day` in this process (`bench.floor`), signed by the home's token."""
    from bench.floor import run_floor
    from hitl_gate.audit.keys import checkpoint_signer
    from hitl_gate.core.domain import load_domain

    settings = _settings(home)
    domain = load_domain(DOMAIN)
    signer = checkpoint_signer(settings.paths, settings.audit_keys)
    signer.public_key()  # the token opened before the clock, as the pipeline's resource is

    def work() -> dict:
        with tempfile.TemporaryDirectory(prefix="hitl-floor-") as scratch:
            return run_floor(settings.paths, domain, day, Path(scratch), signer)

    figures, counts = _timed("floor", rows, profile, work)
    return replace(figures, ok=not counts["blocked"], note=str(counts))


MEASURES = {"pipeline": measure_pipeline, "floor": measure_floor, "baseline": measure_baseline}
MODES = tuple(MEASURES)


def _start_profiler(profile: Path | None):
    if profile is None:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.01)
    profiler.start()
    return profiler


def _stop_profiler(profiler, profile: Path | None) -> None:
    if profiler is None or profile is None:
        return
    profiler.stop()
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.with_suffix(".html").write_text(profiler.output_html(), encoding="utf-8")
    profile.with_suffix(".txt").write_text(
        profiler.output_text(unicode=False, show_all=False), encoding="utf-8"
    )


def cleanup_day(home: Path, day: date) -> None:
    """Remove the day's landing files and stored frames so the next repeat sees the same history.

    The audit database keeps its rows (a re-run day replaces its slice anyway).
    """
    from features.store import partition_path
    from hitl_gate.core.domain import load_domain

    paths = _settings(home).paths
    domain = load_domain(DOMAIN)
    shutil.rmtree(paths.landing / domain.landing_subdir / day.isoformat(), ignore_errors=True)
    (paths.landing / domain.outcomes_subdir / f"synthetic_{day}.csv").unlink(missing_ok=True)
    partition_path(domain, paths.feast_dir, day).unlink(missing_ok=True)
    for stored in paths.warehouse.rglob(f"{day.isoformat()}.parquet"):
        stored.unlink()
    for folder in paths.review_batches.glob(f"{domain.name}-{day:%Y%m%d}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _child(args: list[str]) -> RunFigures:
    """Run one measurement in a fresh interpreter and read its figures back."""
    command = [sys.executable, "-m", "bench.pipeline", *args]
    return RunFigures(**run_measuring_child(command, RESULT_MARK, f"benchmark step {args}"))


def run_benchmark(
    sizes: list[int], repeats: int, home: Path, profile_dir: Path | None, file_format: str
) -> list[dict]:
    """Every size x repeat, the three modes in rotating order; returns one summary per size."""
    from bench.generate import write_day
    from hitl_gate.core.domain import load_domain

    domain = load_domain(DOMAIN)
    reserved = (domain.data_window.end or FIRST_BENCH_DAY) - FIRST_BENCH_DAY
    if len(sizes) * repeats > reserved.days + 1:
        raise SystemExit(
            f"{len(sizes)} sizes x {repeats} repeats need more than the {reserved.days + 1} "
            f"days from {FIRST_BENCH_DAY} to the end of the data window"
        )
    _log(f"preparing {home} (real sample, ingestion, training)")
    _setup_child(home)
    summaries = []
    day = FIRST_BENCH_DAY
    for rows in sizes:
        runs: dict[str, list[RunFigures]] = {mode: [] for mode in MODES}
        for repeat in range(repeats):
            started = time.perf_counter()
            write_day(
                domain,
                _settings(home).paths.landing,
                rows,
                day,
                seed=repeat,
                file_format=file_format,
            )
            _log(f"{rows:,} rows on {day}: generated in {time.perf_counter() - started:.1f} s")
            shift = repeat % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                extra = []
                if profile_dir is not None and repeat == 0:
                    extra = ["--profile", str(profile_dir / f"{mode}_{rows}")]
                figures = _child(
                    ["_measure", mode, "--home", str(home), "--day", str(day), "--rows", str(rows)]
                    + extra
                )
                if not figures.ok:
                    raise SystemExit(f"{mode} failed on {rows} rows: {figures.note}")
                _log(
                    f"  {mode:<8} {figures.wall_s:7.1f} s wall {figures.cpu_s:7.1f} s CPU  "
                    f"peak RSS {figures.peak_rss_mb:,.0f} MB"
                )
                if figures.stage_cpu:
                    costly = sorted(figures.stage_cpu.items(), key=lambda kv: -kv[1])[:4]
                    _log("    CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in costly))
                runs[mode].append(figures)
            cleanup_day(home, day)
            day += timedelta(days=1)
        summaries.append(summarise(rows, runs))
    return summaries


def _setup_child(home: Path) -> None:
    command = [sys.executable, "-m", "bench.pipeline", "_setup", "--home", str(home)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark setup failed:\n{done.stderr[-4000:]}")


def summarise(rows: int, runs: dict[str, list[RunFigures]]) -> dict:
    """Medians per mode and per pipeline stage, and the ratios of the medians.

    `ratio` / `cpu_ratio` compare the pipeline with the honest floor, `baseline_ratio` /
    `baseline_cpu_ratio` with the old baseline (deciding only), from the same repeats.
    """
    pipe = runs["pipeline"]
    wall = {m: statistics.median(r.wall_s for r in runs[m]) for m in MODES}
    cpu = {m: statistics.median(r.cpu_s for r in runs[m]) for m in MODES}
    stages = {
        name: statistics.median(r.stages.get(name, 0.0) for r in pipe)
        for name in dict.fromkeys(k for r in pipe for k in r.stages)
    }
    # Per repeat, not a median: a step whose CPU grows from repeat to repeat is named here.
    stage_cpu_runs = {
        name: [round(r.stage_cpu.get(name, 0.0), 2) for r in pipe]
        for name in dict.fromkeys(k for r in pipe for k in r.stage_cpu)
    }

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    summary: dict = {
        "rows": rows,
        "repeats": len(pipe),
        "stages": stages,
        "stage_cpu_runs": stage_cpu_runs,
        "pipeline_cpu_runs_s": [round(r.cpu_s, 2) for r in pipe],
    }
    for mode in MODES:
        summary[f"{mode}_s"] = wall[mode]
        summary[f"{mode}_cpu_s"] = cpu[mode]
        summary[f"{mode}_rows_per_s"] = rows / wall[mode] if wall[mode] else float("nan")
        summary[f"{mode}_peak_mb"] = max(r.peak_rss_mb for r in runs[mode])
        summary[f"{mode}_runs_s"] = [round(r.wall_s, 1) for r in runs[mode]]
    summary["ratio"] = ratio(wall["pipeline"], wall["floor"])
    summary["cpu_ratio"] = ratio(cpu["pipeline"], cpu["floor"])
    summary["baseline_ratio"] = ratio(wall["pipeline"], wall["baseline"])
    summary["baseline_cpu_ratio"] = ratio(cpu["pipeline"], cpu["baseline"])
    return summary


def markdown(summaries: list[dict], label: str) -> str:
    """The run's tables: totals per size, then the pipeline's step times per size."""
    machine = (
        f"{platform.machine()}, {_cores()} cores, {_memory_gb():.0f} GB, "
        f"Python {platform.python_version()}"
    )
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M} {label}".rstrip(),
        "",
        f"Machine: {machine}; load average at the end {_load()}. Medians of "
        f"{summaries[0]['repeats']} repeats; wall and CPU (user + system) seconds of the run "
        "itself, imports excluded; rows/s on wall time; peak RSS is the largest of the repeats "
        "(child process, `getrusage`). Floor = `bench.floor` (the baseline plus records, "
        "SHA-256 chain, signed checkpoint, blocking expectations and the day's metrics); "
        "baseline = the old `bench.baseline` (deciding only).",
        "",
        "| rows | pipeline s | floor s | baseline s | ratio to floor | ratio to baseline "
        "| pipeline CPU s | floor CPU s | baseline CPU s | CPU ratio to floor "
        "| CPU ratio to baseline | pipeline rows/s | floor rows/s "
        "| peak RSS MB (pipeline / floor / baseline) | runs (pipeline / floor / baseline) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['rows']:,} | {s['pipeline_s']:.1f} | {s['floor_s']:.1f} | "
            f"{s['baseline_s']:.1f} | {s['ratio']:.2f} | {s['baseline_ratio']:.2f} | "
            f"{s['pipeline_cpu_s']:.1f} | {s['floor_cpu_s']:.1f} | {s['baseline_cpu_s']:.1f} | "
            f"{s['cpu_ratio']:.2f} | {s['baseline_cpu_ratio']:.2f} | "
            f"{s['pipeline_rows_per_s']:,.0f} | {s['floor_rows_per_s']:,.0f} | "
            f"{s['pipeline_peak_mb']:,.0f} / {s['floor_peak_mb']:,.0f} / "
            f"{s['baseline_peak_mb']:,.0f} | {s['pipeline_runs_s']} / {s['floor_runs_s']} / "
            f"{s['baseline_runs_s']} |"
        )
    lines += _step_table(
        "Pipeline step wall time (s, from Dagster step events; the rest of the run is Dagster's "
        "own orchestration):",
        summaries,
        "stages",
        lambda s, name: f"{s['stages'].get(name, 0.0):.2f}",
        lambda s: f"{s['pipeline_s'] - sum(s['stages'].values()):.2f}",
    )
    if any(s.get("stage_cpu_runs") for s in summaries):
        lines += _step_table(
            "Pipeline step CPU s per repeat (`a / b / c`, in the order run; the process's CPU "
            "clock sampled every 0.1 s across each step's window, `bench.measure.step_cpu`):",
            summaries,
            "stage_cpu_runs",
            lambda s, name: _repeats(s["stage_cpu_runs"].get(name, [])),
            _cpu_outside_steps,
        )
    return "\n".join(lines) + "\n"


def _step_table(
    title: str,
    summaries: list[dict],
    field: str,
    cell: Callable[[dict, str], str],
    outside: Callable[[dict], str],
) -> list[str]:
    """A table of one figure per step (the steps named in each summary's `field`) and size,
    ending with what ran outside the steps."""
    names = list(dict.fromkeys(k for s in summaries for k in s.get(field, {})))
    lines = [
        "",
        title,
        "",
        "| step | " + " | ".join(f"{s['rows']:,}" for s in summaries) + " |",
        "|---|" + "---:|" * len(summaries),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(s, name) for s in summaries) + " |")
    lines.append("| (outside steps) | " + " | ".join(outside(s) for s in summaries) + " |")
    return lines


def _repeats(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def _cpu_outside_steps(summary: dict) -> str:
    """Each repeat's CPU outside the steps: what a growing repeat grew in if no step did."""
    runs = summary["stage_cpu_runs"].values()
    steps = [sum(v[i] for v in runs) for i in range(summary["repeats"])]
    cpu = summary["pipeline_cpu_runs_s"]
    return _repeats([c - t for c, t in zip(cpu, steps, strict=True)])


def append_report(text: str, report: Path = REPORT) -> None:
    """Append `text` at the end of the `## Pipeline` section, creating file or section."""
    current = report.read_text(encoding="utf-8") if report.exists() else "# Benchmarks\n"
    if SECTION not in current.splitlines():
        report.write_text(current.rstrip("\n") + f"\n\n{SECTION}\n\n{text}", encoding="utf-8")
        return
    lines = current.splitlines(keepends=True)
    start = lines.index(SECTION + "\n") if SECTION + "\n" in lines else lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = "".join(lines[:end]).rstrip("\n"), "".join(lines[end:])
    report.write_text(before + "\n\n" + text + ("\n" + after if after else ""), encoding="utf-8")


def _load() -> str:
    import os

    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _memory_gb() -> float:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        return int(meminfo.read_text().split()[1]) / 1024 / 1024
    return 0.0


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_setup", "_measure"):
        _child_main(argv)
        return
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--home", type=Path, help="keep state here (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the first repeat")
    parser.add_argument("--label", default="", help="a note for the report heading")
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hitl-bench-") as tmp:
        home = args.home or Path(tmp) / "home"
        profile_dir = home.parent / "profiles" if args.profile else None
        summaries = run_benchmark(args.rows, args.repeats, home, profile_dir, args.format)
        text = markdown(summaries, args.label)
        if profile_dir is not None:
            kept = Path(tempfile.mkdtemp(prefix="hitl-bench-profiles-"))
            shutil.copytree(profile_dir, kept, dirs_exist_ok=True)
            _log(f"profiles: {kept}")
    sys.stdout.write(text)
    if not args.no_report:
        append_report(text)
        _log(f"appended to {REPORT}")


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("mode", nargs="?")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--day", type=date.fromisoformat)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    if args.command == "_setup":
        setup_home(args.home)
        return
    figures = MEASURES[args.mode](args.home, args.day, args.rows, args.profile)
    sys.stdout.write(RESULT_MARK + json.dumps(figures.to_json()) + "\n")


if __name__ == "__main__":
    main()

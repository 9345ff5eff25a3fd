"""Pipeline commands: `hitl demo`, `hitl run`, `hitl train`."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.app.cli.common import (
    day,
    import_model_format_to_train,
    load_selected_domain,
    positive_int,
    settings_from,
)
from hitl_gate.app.day_range import day_range

if TYPE_CHECKING:
    from hitl_gate.core.domain import DataWindow


def cmd_run(args: argparse.Namespace) -> None:
    """Run the daily pipeline for one day or a range of days (one run).

    `--ingest-only` stops after the features: how a new domain loads its history before it
    has a model to score with (then `hitl train`, then full runs).
    """
    start, end = day_range(args.partition, args.to, first="--partition", last="--to")
    settings = settings_from(args)
    domain = load_selected_domain(args)
    check_days_in_window(domain.data_window, start, end)
    folder = settings.paths.landing / domain.landing_subdir
    empty = days_without_files(folder, start, end)
    if len(empty) == (end - start).days + 1:
        where = f"{folder / start.isoformat()}" + ("" if start == end else " ...")
        raise SystemExit(
            f"no files landed for {domain.name} on {start}"
            + ("" if start == end else f"..{end}")
            + f" (looked in {where}): nothing to run"
        )
    if empty:
        print(f"{domain.name}: no files landed on {', '.join(map(str, empty))}")
    from assets.common import stage_key
    from hitl_gate.app.demo import INGEST_STAGES
    from hitl_gate.app.runner import raise_for_failure, run_job
    from pipelines.jobs import daily_job_name

    only = [stage_key(domain, s) for s in INGEST_STAGES] if args.ingest_only else None
    label = f"{domain.name} {start}" + ("" if end == start else f"..{end}")
    result = run_job(
        settings, daily_job_name(domain), start=start, end=end, only=only, progress=label
    )
    raise_for_failure(result, f"{domain.name} {start}..{end}")
    what = "ingestion and features" if args.ingest_only else "pipeline"
    print(f"{domain.name}: {what} ran for {start}..{end} (run {result.run_id})")
    if not args.ingest_only and settings.paths.audit_db.exists():
        from hitl_gate.core.database import audit_connection
        from hitl_gate.observability.run_summary import route_share_lines

        with audit_connection(settings.paths.audit_db, read_only=True) as con:
            for line in route_share_lines(con, domain.name, start, end):
                print(f"  {line}")


def check_days_in_window(window: DataWindow, start: date, end: date) -> None:
    """Refuse days the domain's daily partitions do not have (outside its declared data window,
    or in the future)."""
    today = date.today()
    if start < window.start:
        raise SystemExit(f"--partition {start} is before the domain's first day {window.start}")
    if window.end is not None and end > window.end:
        raise SystemExit(f"{end} is after the domain's last day {window.end} (its data_window)")
    if end > today:
        raise SystemExit(f"{end} is in the future (today is {today})")


def days_without_files(folder: Path, start: date, end: date) -> list[date]:
    """The days of `start..end` whose landing folder `folder/<day>/` holds no file.

    Checked before a run, so an empty day is said as such instead of surfacing as a failed
    data-quality check deep in the run.
    """
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return [d for d in days if not _has_files(folder / d.isoformat())]


def _has_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def cmd_train(args: argparse.Namespace) -> None:
    """Train and register a model version from the features and outcomes materialised so far."""
    settings = settings_from(args)
    import_model_format_to_train(settings)
    from hitl_gate.app.runner import raise_for_failure, run_job
    from pipelines.jobs import training_job_name

    domain = load_selected_domain(args)
    result = run_job(settings, training_job_name(domain), progress=f"{domain.name} training")
    raise_for_failure(result, f"{domain.name} training")
    print(f"{domain.name}: model trained and registered (run {result.run_id})")
    from models.summary import latest_version_summary

    for line in latest_version_summary(domain.model.name, settings.paths.mlflow_dir):
        print(f"  {line}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the whole flow on the bundled sample, close one review loop, print where outputs are."""
    from hitl_gate.app.demo import run_demo, selected_domains

    started = time.monotonic()
    settings = settings_from(args)
    if args.jobs is not None:
        settings = replace(settings, demo_parallel=args.jobs)
    summary = run_demo(settings, selected_domains(settings, args.domain))
    print(summary)
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the pipeline commands."""
    demo = sub.add_parser(
        "demo", help="run the whole pipeline on each domain's sample (or only --domain's)"
    )
    demo.add_argument(
        "--jobs",
        type=positive_int,
        help="domains run at once, a process each (default HITL_DEMO_PARALLEL, else one per "
        "domain up to the CPU cores; 1: one after the other)",
    )
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run the daily pipeline for a partition (or a range)")
    run.add_argument("--partition", required=True, type=day, help="day, YYYY-MM-DD")
    run.add_argument("--to", type=day, help="last day of a range, YYYY-MM-DD (one run)")
    run.add_argument(
        "--ingest-only",
        action="store_true",
        help="only ingest, validate and featurise (history before the first model)",
    )
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train and register a model version")
    train.set_defaults(func=cmd_train)

"""`hitl`: the command line of hitl-gate.

Commands import what they need when they run, so `hitl --help` and `hitl audit trace` stay
fast and never pay for Feast, MLflow or Great Expectations.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from hitl_gate.home import HitlPaths

DEFAULT_DOMAIN = "consumer_credit"


def _paths(args: argparse.Namespace) -> HitlPaths:
    """Paths from `--home` or the environment, exported so the definitions see the same."""
    from hitl_gate.runner import use_paths

    paths = HitlPaths.from_env(args.home)
    use_paths(paths)
    return paths


def cmd_run(args: argparse.Namespace) -> None:
    """Run the daily pipeline for one day or a range of days (one run)."""
    from hitl_gate.domain import load_domain
    from hitl_gate.runner import load_definitions, raise_for_failure, run_job
    from pipelines.jobs import daily_job_name

    _paths(args)
    domain = load_domain(args.domain)
    start = date.fromisoformat(args.partition)
    end = date.fromisoformat(args.to) if args.to else start
    result = run_job(load_definitions(), daily_job_name(domain), start=start, end=end)
    raise_for_failure(result, f"{domain.name} {start}..{end}")
    print(f"{domain.name}: pipeline ran for {start}..{end} (run {result.run_id})")


def cmd_train(args: argparse.Namespace) -> None:
    """Train and register a model version from the features and outcomes materialised so far."""
    from hitl_gate.domain import load_domain
    from hitl_gate.runner import load_definitions, raise_for_failure, run_job
    from pipelines.jobs import training_job_name

    _paths(args)
    domain = load_domain(args.domain)
    result = run_job(load_definitions(), training_job_name(domain))
    raise_for_failure(result, f"{domain.name} training")
    print(f"{domain.name}: model trained and registered (run {result.run_id})")


def cmd_review_ingest(args: argparse.Namespace) -> None:
    """Take a returned verdict file in, validate it, and run the review loop for its day."""
    from hitl_gate.audit.store import audit_connection, query_frame
    from hitl_gate.domain import load_domain
    from hitl_gate.review.intake import batch_partition, file_sha256, peek_batch_id
    from hitl_gate.runner import load_definitions, raise_for_failure, run_job
    from pipelines.jobs import review_loop_job_name

    paths = _paths(args)
    domain = load_domain(args.domain)
    source = Path(args.file).resolve()
    if not source.is_file():
        raise SystemExit(f"{source}: no such file")
    sha = file_sha256(source)
    batch_id = peek_batch_id(source)
    day = batch_partition(batch_id, domain) if batch_id else None
    if day is None:
        raise SystemExit(
            f"{source.name}: no readable batch_id of domain {domain.name} in column 'batch_id' "
            "of sheet 'cases' (is this a returned review batch file?)"
        )
    inbox = paths.review / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    if source.parent != inbox:
        shutil.copy2(source, inbox / source.name)
    result = run_job(load_definitions(), review_loop_job_name(domain), start=day, end=day)
    raise_for_failure(result, f"review loop for {day}")
    with audit_connection(paths.audit_db, read_only=True) as con:
        files = query_frame(con, "SELECT * FROM verdict_files WHERE file_sha256 = ?", [sha])
        rejections = query_frame(
            con, "SELECT message FROM verdict_rejections WHERE file_sha256 = ?", [sha]
        )
    if files.height == 0:
        raise SystemExit(f"{source.name}: not recorded (see run {result.run_id})")
    row = files.row(0, named=True)
    print(
        f"{source.name}: batch {row['batch_id']}, {row['rows_accepted']} verdicts accepted, "
        f"{row['rows_rejected']} rejected" + (f"; error: {row['error']}" if row["error"] else "")
    )
    for message in rejections["message"].to_list():
        print(f"  rejected: {message}")


def cmd_audit_trace(args: argparse.Namespace) -> None:
    """Print everything recorded about one case, from input file to executed action."""
    from hitl_gate.audit.trace import format_trace, trace_case

    paths = HitlPaths.from_env(args.home)
    trace = trace_case(paths.audit_db, args.case_id)
    if trace is None:
        raise SystemExit(f"case {args.case_id}: not found in {paths.audit_db}")
    print(format_trace(trace))


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the whole flow on the bundled sample, close one review loop, print where outputs are."""
    from hitl_gate.demo_run import run_demo

    started = time.monotonic()
    paths = _paths(args)
    summary = run_demo(paths, args.domain)
    print(summary)
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hitl", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="state folder (default: $HITL_HOME or ./.hitl)")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN, help="decision domain")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the bundled sample")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run the daily pipeline for a partition (or a range)")
    run.add_argument("--partition", required=True, help="day, YYYY-MM-DD")
    run.add_argument("--to", help="last day of a range, YYYY-MM-DD (one run)")
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train and register a model version")
    train.set_defaults(func=cmd_train)

    review = sub.add_parser("review", help="reviewer workflow").add_subparsers(
        dest="review_command", required=True
    )
    ingest = review.add_parser("ingest", help="ingest a returned verdict file (XLSX or CSV)")
    ingest.add_argument("file")
    ingest.set_defaults(func=cmd_review_ingest)

    audit = sub.add_parser("audit", help="auditor commands").add_subparsers(
        dest="audit_command", required=True
    )
    trace = audit.add_parser("trace", help="print the full path of one case")
    trace.add_argument("case_id")
    trace.set_defaults(func=cmd_audit_trace)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    # Library deprecation notices (ibis on DuckDB 2, SQLAlchemy in MLflow) are for us, not users.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])

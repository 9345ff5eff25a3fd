"""Reviewer commands: `hitl review ingest FILE`."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hitl_gate.app.cli import assignment
from hitl_gate.app.cli.common import (
    DEFAULT_DOMAIN,
    domain_names,
    load_selected_domain,
    settings_from,
)


def domain_of_batch(batch_id: str | None, explicit: str | None, declared: list[str]) -> str:
    """`--domain` when given, else the `declared` domain whose name prefixes the batch id."""
    if explicit:
        return explicit
    owners = [n for n in declared if batch_id and batch_id.startswith(f"{n}-")]
    return max(owners, key=len) if owners else DEFAULT_DOMAIN


def cmd_review_ingest(args: argparse.Namespace) -> None:
    """Take a returned verdict file in, validate it, and run the review loop for its day."""
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.core.database import audit_connection, query_frame
    from hitl_gate.review.intake.verdict_files import batch_partition, file_sha256, peek_batch_id
    from pipelines.jobs import review_loop_job_name

    settings = settings_from(args)
    paths = settings.paths
    source = Path(args.file).resolve()
    if not source.is_file():
        raise SystemExit(f"{source}: no such file")
    sha = file_sha256(source)
    batch_id = peek_batch_id(source)
    domain = load_selected_domain(args, domain_of_batch(batch_id, args.domain, domain_names(args)))
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
    result = run_job(settings, review_loop_job_name(domain), start=day, end=day)
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


def cmd_review_status(args: argparse.Namespace) -> None:
    """Queues, open batches, due and overdue cases, open escalations."""
    from datetime import UTC, datetime

    from hitl_gate.core.database import audit_connection
    from hitl_gate.review.intake.sweep import review_status

    paths = settings_from(args).paths
    domain = load_selected_domain(args)
    if not paths.audit_db.exists():
        raise SystemExit(f"{paths.audit_db}: no audit database yet (run the pipeline first)")
    with audit_connection(paths.audit_db, read_only=True) as con:
        status = review_status(con, domain.name, datetime.now(UTC))
    if status.is_empty():
        print(f"{domain.name}: no review batches")
        return
    with_header = [status.columns, *[list(map(str, row)) for row in status.iter_rows()]]
    widths = [max(len(str(row[i])) for row in with_header) for i in range(len(status.columns))]
    for row in with_header:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `review` command group."""
    review = sub.add_parser("review", help="reviewer workflow").add_subparsers(
        dest="review_command", required=True
    )
    ingest = review.add_parser("ingest", help="ingest a returned verdict file (XLSX or CSV)")
    ingest.add_argument("file")
    ingest.set_defaults(func=cmd_review_ingest)
    status = review.add_parser("status", help="queues, open batches, due and overdue cases")
    status.set_defaults(func=cmd_review_status)
    assignment.register_reassign(review)

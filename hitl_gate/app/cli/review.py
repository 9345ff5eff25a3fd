"""Reviewer commands: `hitl review sign FILE`, `hitl review ingest FILE`, `hitl review status`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hitl_gate.app.cli import assignment, review_quality
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
    """Take a returned, signed verdict file in, and run the review loop for its day.

    The file and its signature (`FILE.sig`) are stored in the inbox by content hash, so two
    files of the same name never overwrite each other. Exits non-zero when anything in the file
    was refused (a replay of an earlier refusal included).
    """
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.core.database import audit_connection
    from hitl_gate.review.intake.received import escaped, receive_file
    from hitl_gate.review.intake.results import earlier_outcome, recorded_outcome
    from hitl_gate.review.intake.signed import read_signature
    from hitl_gate.review.intake.verdict_files import batch_partition, file_sha256, peek_batch_id
    from pipelines.jobs import review_loop_job_name

    settings = settings_from(args)
    paths = settings.paths
    source = Path(args.file).resolve()
    name = escaped(source.name)
    if not source.is_file():
        raise SystemExit(f"{escaped(str(source))}: no such file")
    sha = file_sha256(source)
    signature = read_signature(source)
    if paths.audit_db.exists():
        with audit_connection(paths.audit_db, read_only=True) as con:
            earlier = earlier_outcome(con, name, sha, signature)
        if earlier is not None:
            print(earlier.summary())
            if earlier.refused:
                raise SystemExit(1)
            return
    batch_id = peek_batch_id(source)
    domain = load_selected_domain(args, domain_of_batch(batch_id, args.domain, domain_names(args)))
    day = batch_partition(batch_id, domain) if batch_id else None
    if day is None:
        raise SystemExit(
            f"{name}: no readable batch_id of domain {domain.name} in column 'batch_id' "
            "of sheet 'cases' (is this a returned review batch file?)"
        )
    receive_file(source, paths.review / "inbox")
    result = run_job(settings, review_loop_job_name(domain), start=day, end=day)
    raise_for_failure(result, f"review loop for {day}")
    with audit_connection(paths.audit_db, read_only=True) as con:
        outcome = recorded_outcome(con, name, sha, signature)
    if outcome is None:
        raise SystemExit(f"{name}: not recorded (see run {result.run_id})")
    print(outcome.summary())
    for message in outcome.messages:
        print(f"  refused: {message}")
    if outcome.refused:
        raise SystemExit(1)


def cmd_review_sign(args: argparse.Namespace) -> None:
    """Write FILE.sig: the detached SSH signature of a returned file, with your key."""
    from hitl_gate.identity.signatures import VERDICTS, SignatureError, sign_file

    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    key = Path(args.key).expanduser() if args.key else _default_key()
    try:
        written = sign_file(path, key, VERDICTS)
    except SignatureError as error:
        raise SystemExit(str(error)) from error
    print(f"{written}: signed with {key} (namespace {VERDICTS}); return it beside {path.name}")


def _default_key() -> Path:
    """The user's first usual OpenSSH key (`~/.ssh/id_ed25519`, then ecdsa, then rsa)."""
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        candidate = Path.home() / ".ssh" / name
        if candidate.is_file():
            return candidate
    raise SystemExit("no key given (--key PATH) and none found in ~/.ssh")


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
    ingest = review.add_parser(
        "ingest", help="ingest a returned verdict file (XLSX or CSV) and its signature FILE.sig"
    )
    ingest.add_argument("file")
    ingest.set_defaults(func=cmd_review_ingest)
    sign = review.add_parser(
        "sign", help="sign a returned verdict file with your SSH key (writes FILE.sig)"
    )
    sign.add_argument("file")
    sign.add_argument("--key", help="private key file (default: ~/.ssh/id_ed25519, ...)")
    sign.set_defaults(func=cmd_review_sign)
    status = review.add_parser("status", help="queues, open batches, due and overdue cases")
    status.set_defaults(func=cmd_review_status)
    assignment.register_reassign(review)
    review_quality.register(review)

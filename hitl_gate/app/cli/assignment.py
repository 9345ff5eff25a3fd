"""`hitl review reassign BATCH --to PERSON --reason TEXT --key KEY`: a supervisor's signed act.

The supervisor signs the reassignment (namespace `hitl-gate-review-admin`) with their own SSH
key (`--key`: a private key, or a public key whose private half is in ssh-agent); the command
checks it against the people registry, appends it to `review_assignments` and hands the batch
files to the new assignee. `--print-payload` prints the exact bytes to sign for people who sign
elsewhere (`ssh-keygen -Y sign -n hitl-gate-review-admin`), and `--signature FILE` records
such a signature.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from hitl_gate.app.cli.common import load_selected_domain, settings_from


def _signature(args: argparse.Namespace, payload: bytes) -> str:
    from hitl_gate.identity.signatures import REVIEW_ADMIN, sign_bytes

    if args.signature:
        return Path(args.signature).read_text(encoding="ascii")
    if args.key:
        return sign_bytes(payload, Path(args.key).expanduser(), REVIEW_ADMIN)
    raise SystemExit("a reassignment must be signed: give --key or --signature")


def cmd_review_reassign(args: argparse.Namespace) -> None:
    """Check, record and carry out a supervisor's signed reassignment of one batch.

    When the batch is already assigned to `--to` (an earlier run recorded the act and stopped
    before moving the files), only the hand-over of the files is completed.
    """
    from hitl_gate.core.database import audit_connection, transaction
    from hitl_gate.identity.registry import RegistryError
    from hitl_gate.identity.signatures import SignatureError
    from hitl_gate.identity.store import load_registry
    from hitl_gate.review.assignments import (
        AssignmentError,
        current_assignee,
        reassign,
        reassignment_payload,
    )
    from hitl_gate.review.export.handover import hand_over
    from hitl_gate.review.export.sealing import pipeline_identity
    from hitl_gate.review.settings import review_settings
    from hitl_gate.review.signing import load_or_create_key

    paths = settings_from(args).paths
    now = datetime.now(UTC)
    at = datetime.fromisoformat(args.at) if args.at else now
    with audit_connection(paths.audit_db) as con:
        current = current_assignee(con, args.batch_id)
        if current is None:
            raise SystemExit(f"batch {args.batch_id}: never assigned (unknown batch?)")
        (domain_name,) = con.execute(
            "SELECT domain FROM review_assignments WHERE batch_id = ? AND seq = 1",
            [args.batch_id],
        ).fetchone() or ("",)
        domain = load_selected_domain(args, str(domain_name))
        review = review_settings(domain)
        if review is None:
            raise SystemExit(f"{domain.name}: no review settings, no queues to reassign in")
        payload = reassignment_payload(
            args.batch_id, domain.name, args.to, args.reason, at, current.seq + 1
        )
        if args.print_payload:
            sys.stdout.buffer.write(payload)
            return
        try:
            registry = load_registry(con)
            if current.assignee_id == args.to:
                message = f"already assigned to {args.to}; hand-over completed"
            else:
                queue = review.queue(current.queue, domain)
                escalation = review.queues[queue.escalate_to].role if queue.escalate_to else None
                signature = _signature(args, payload)
                with transaction(con):
                    done = reassign(
                        con,
                        registry,
                        payload,
                        signature,
                        queue_role=queue.role,
                        escalation_role=escalation,
                        now=now,
                    )
                message = (
                    f"reassigned from {done.previous_assignee} to {args.to} (assignment "
                    f"{done.assignment.seq}, signed by {done.supervisor_id} {done.fingerprint})"
                )
        except (AssignmentError, SignatureError, RegistryError, OSError) as error:
            raise SystemExit(f"batch {args.batch_id}: reassignment refused: {error}") from None
    folder = hand_over(
        paths.review_batches,
        args.batch_id,
        to=args.to,
        key=load_or_create_key(paths.secrets_dir, os.environ.get("HITL_REVIEW_KEY") or None),
        registry=registry,
        pipeline=pipeline_identity(paths.secrets_dir),
        at=now,
    )
    print(f"batch {args.batch_id}: {message}; files now in {folder}")


def register_reassign(review: argparse._SubParsersAction) -> None:
    """Add `hitl review reassign` to the `review` command group."""
    parser = review.add_parser(
        "reassign", help="reassign a review batch to another reviewer (supervisor, signed)"
    )
    parser.add_argument("batch_id")
    parser.add_argument("--to", required=True, help="the new assignee's person id")
    parser.add_argument("--reason", required=True, help="why, in words (kept in the audit)")
    parser.add_argument("--key", help="the supervisor's SSH key that signs the act")
    parser.add_argument("--signature", help="a signature made elsewhere over --print-payload")
    parser.add_argument("--at", help="the time signed into the payload (ISO-8601, with offset)")
    parser.add_argument(
        "--print-payload", action="store_true", help="print the bytes to sign and stop"
    )
    parser.set_defaults(func=cmd_review_reassign)

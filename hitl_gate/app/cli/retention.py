"""`hitl retention apply`: remove personal data past its retention (see audit/retention.py)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from hitl_gate.app.cli.common import (
    audit_signer,
    day,
    domain_names,
    load_selected_domain,
    require_audit_db,
    resolve_paths,
)
from hitl_gate.app.cli.signing import KEY_HELP, signed


def cmd_retention_apply(args: argparse.Namespace) -> None:
    """Apply each domain's retention as of `--as-of` (default today); refuse, removing nothing,
    when anything younger than the legal minimum would go."""
    import uuid
    from datetime import UTC, datetime

    from hitl_gate.audit.replica import refresh_replica
    from hitl_gate.audit.retention import RetentionRefused, apply_retention
    from hitl_gate.audit.run_seal import readable_segments
    from hitl_gate.audit.run_segments import Segments
    from hitl_gate.audit.store_rewrite import rewrite_stores
    from hitl_gate.core.database import audit_connection

    paths = resolve_paths(args)
    require_audit_db(paths)
    today = datetime.now(UTC).date()
    as_of = args.as_of or today
    names = [args.domain] if args.domain and args.domain != "demo" else domain_names(args)
    key = None if args.dry_run else audit_signer(args)
    run_id = f"cli-retention-dry-{uuid.uuid4()}"
    segments = Segments(paths.segments_dir)
    with audit_connection(paths.audit_db, read_only=True) as con:
        folded = readable_segments(con, segments)  # the replica reads them in place
    with audit_connection(paths.audit_db, attachable=folded) as con:
        domains = [load_selected_domain(args, n) for n in names]
        if not args.dry_run:
            run_id = _authorised_run(con, args, names, as_of)
        try:
            results = [
                apply_retention(
                    con, paths, d, as_of, today=today, run_id=run_id, signing_key=key,
                    dry_run=args.dry_run,
                )
                for d in domains
            ]  # fmt: skip
        except RetentionRefused as exc:
            raise SystemExit(str(exc)) from exc
        if not args.dry_run:  # the replica keeps no copy of what was just redacted
            refresh_replica(
                con, paths.replica_dir, keep=1, grace=timedelta(0), reuse=False,
                segments=segments,
            )  # fmt: skip
    rewritten = [] if args.dry_run else rewrite_stores(paths.home)  # after the connection closed
    for result in results:
        verb = "would remove" if args.dry_run else "removed"
        print(f"retention {verb}: {result.plan.summary()}")
        if not args.dry_run and result.plan.removals:
            print(f"  {result.files_removed} files or folders deleted; "
                  f"{result.entries_sealed} audit entries sealed (run {run_id})")  # fmt: skip
    if rewritten:
        scrubbed = sum(r.scrubbed for r in rewritten)
        print(f"rewrote {len(rewritten)} databases from their live content "
              f"({scrubbed} personal metadata values scrubbed)")  # fmt: skip


def _authorised_run(con, args: argparse.Namespace, names: list[str], as_of) -> str:  # noqa: ANN001
    """Sign the deletion with `--signing-key` and record it; the run id of the apply."""
    from hitl_gate.audit.retention_acts import (
        RetentionNotAuthorised,
        authorise_retention,
        retention_payload,
        retention_run_id,
    )
    from hitl_gate.identity.signatures import RETENTION

    if not args.signing_key:
        raise SystemExit(
            "REFUSED: retention apply removes personal data: sign it with --signing-key "
            "(a compliance officer of every domain concerned; --dry-run needs no key)"
        )
    act = signed(retention_payload(names, as_of), args.signing_key, RETENTION, "retention apply")
    try:
        authorise_retention(con, act, names, as_of)
    except RetentionNotAuthorised as exc:
        raise SystemExit(f"REFUSED: {exc}") from exc
    return retention_run_id(act)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `retention` command group."""
    group = sub.add_parser("retention", help="retention of personal data").add_subparsers(
        dest="retention_command", required=True
    )
    apply = group.add_parser("apply", help="remove personal data past its retention period")
    apply.add_argument(
        "--as-of", type=day, help="the day retention is computed for (default: today)"
    )
    apply.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    apply.add_argument("--signing-key", metavar="PATH", help=f"{KEY_HELP} (compliance role)")
    apply.set_defaults(func=cmd_retention_apply)

"""Auditor commands: `hitl audit trace CASE_ID`, `verify`, `seal`, `sql`, `export`,
`verify-bundle`."""

from __future__ import annotations

import argparse
from pathlib import Path

from hitl_gate.app.cli.common import (
    audit_signer,
    day,
    load_selected_domain,
    require_audit_db,
    resolve_paths,
    settings_from,
)
from hitl_gate.app.day_range import day_range


def cmd_audit_trace(args: argparse.Namespace) -> None:
    """Print everything recorded about one case, from input file to executed action."""
    from hitl_gate.audit.run_segments import Segments
    from hitl_gate.audit.trace import format_trace, trace_case

    paths = resolve_paths(args)
    require_audit_db(paths)
    name = trace_domain(paths.audit_db, args.case_id, args.trace_domain or args.domain)
    case_id_column = load_selected_domain(args, name).case_id
    trace = trace_case(
        paths.audit_db, args.case_id, name, paths.warehouse, case_id_column,
        segments=Segments(paths.segments_dir),
    )  # fmt: skip
    if trace is None:
        raise SystemExit(f"case {args.case_id!r}: not found in domain {name} ({paths.audit_db})")
    print(format_trace(trace))


def trace_domain(audit_db: Path, case_id: str, named: str | None) -> str:
    """The domain whose case `case_id` is traced: the one named, else the only one holding it.

    Case ids are unique per domain only; when several domains hold the id and none is named,
    this refuses, listing them, rather than tracing whichever comes first.
    """
    from hitl_gate.audit.trace import case_domains

    holding = case_domains(audit_db, case_id)
    if named and named != "demo":  # `demo` means every domain, i.e. none named
        if named not in holding:
            elsewhere = f"; recorded in: {', '.join(holding)}" if holding else ""
            raise SystemExit(f"case {case_id!r}: not found in domain {named}{elsewhere}")
        return named
    if not holding:
        raise SystemExit(f"case {case_id!r}: not found in {audit_db}")
    if len(holding) > 1:
        raise SystemExit(
            f"case {case_id!r} is recorded in {len(holding)} domains: {', '.join(holding)}; "
            "name one: hitl audit trace ID --domain D"
        )
    return holding[0]


def cmd_audit_verify(args: argparse.Namespace) -> None:
    """Recompute the chain and every checkpoint; exit 1 naming the first broken entry."""
    import time
    from pathlib import Path

    from hitl_gate.audit.run_seal import verify_home, verifying_session
    from hitl_gate.audit.trust import TrustAnchorError, load_trust_anchor
    from hitl_gate.audit.witness import TsaCheck, load_tsa_roots

    settings = settings_from(args)
    paths = settings.paths
    require_audit_db(paths)
    try:  # the pinned key, configured outside the home; never a key found in the home
        public_key = load_trust_anchor(settings.audit_keys, paths, args.public_key)
    except TrustAnchorError as exc:
        raise SystemExit(f"audit verify: {exc}") from exc
    started = time.perf_counter()
    witness = Path(args.witness) if args.witness else paths.witness_dir
    tsa = TsaCheck(tuple(load_tsa_roots(settings.tsa_roots)))
    with verifying_session(paths) as con:  # it may attach the folded segments, nothing else
        report = verify_home(  # the single chain and the per-run segments, when runs used them
            con,
            paths,
            public_key,
            lineage=not args.chain_only,
            workers=args.workers,
            witness=witness,
            tsa=tsa,
        )
    elapsed = time.perf_counter() - started
    print(report.summary())
    rate = report.entries / elapsed if elapsed > 0 else 0.0
    print(f"verified in {elapsed:.2f} s ({rate:,.0f} entries/s)")
    if not report.ok:
        raise SystemExit(1)


def cmd_audit_seal(args: argparse.Namespace) -> None:
    """Log lineage written outside a pipeline run (or by an interrupted run) and checkpoint it."""
    import uuid

    from hitl_gate.audit.replica import refresh_replica
    from hitl_gate.audit.run_seal import readable_segments
    from hitl_gate.audit.run_segments import Segments
    from hitl_gate.audit.seal import STEP_OWNED, SealRefused, seal_run
    from hitl_gate.audit.witness import WitnessConfig
    from hitl_gate.core.db_lock import open_when_free

    settings = settings_from(args)
    paths = settings.paths
    key = audit_signer(args)
    witness = WitnessConfig(paths.witness_dir, settings.tsa_url)
    wait = settings.audit_lock_wait_seconds
    segments = Segments(paths.segments_dir)
    folded: list[Path] = []  # the replica reads the folded segments' entries in place
    if paths.audit_db.exists():
        with open_when_free(paths.audit_db, True, wait) as con:
            folded = readable_segments(con, segments)
    try:
        with open_when_free(paths.audit_db, False, wait, [paths.warehouse], folded) as con:
            result = seal_run(
                con,
                f"cli-seal-{uuid.uuid4()}",
                key,
                paths.checkpoints_dir,
                witness=witness,
                owned=STEP_OWNED,
            )
            refresh_replica(con, paths.replica_dir, segments=segments)
    except SealRefused as refused:
        raise SystemExit(str(refused)) from refused
    head = result.checkpoint["last_seq"] if result.checkpoint else "unchanged"
    print(f"audit log: {result.appended} entries appended (head {head}); replica refreshed")


def cmd_audit_sql(args: argparse.Namespace) -> None:
    """Query the auditors' replica: one statement (`-c`), or a prompt until `.quit`."""
    from hitl_gate.app.cli.sql_prompt import open_replica, prompt, run_statement

    folder = resolve_paths(args).replica_dir
    with open_replica(folder) as con:
        if args.command_sql is not None:
            if not run_statement(con, args.command_sql):
                raise SystemExit(1)
            return
        prompt(con, folder)


def cmd_audit_public_key(args: argparse.Namespace) -> None:
    """Print the signer's public key (hex): what a verifier pins as its trust anchor."""
    from hitl_gate.audit.keys import public_key_hex

    print(public_key_hex(audit_signer(args)))


def cmd_audit_rotate_key(args: argparse.Namespace) -> None:
    """Hand checkpoint signing over to the token key `--new-key-label` (docs/key_custody.md)."""
    from dataclasses import replace

    from hitl_gate.audit.keys import checkpoint_signer, public_key_hex
    from hitl_gate.audit.trust import sign_handover
    from hitl_gate.core.database import audit_connection

    settings = settings_from(args)
    keys = replace(settings.audit_keys, signer="token", key_label=args.new_key_label)
    old = audit_signer(args)
    new = checkpoint_signer(settings.paths, keys, pin=_token_pin())
    with audit_connection(settings.paths.audit_db) as con:
        record = sign_handover(con, old, new, settings.paths.checkpoints_dir)
    print(
        f"key hand-over after seq {record['after_seq']}: {record['old_public_key']} -> "
        f"{public_key_hex(new)}\nnow set HITL_AUDIT_SIGNER=token and "
        f"HITL_AUDIT_KEY_LABEL={args.new_key_label} for every process that seals"
    )


def _token_pin() -> str | None:
    import os

    from hitl_gate.core.settings import AUDIT_TOKEN_PIN_ENV

    return os.environ.get(AUDIT_TOKEN_PIN_ENV, "").strip() or None


def cmd_audit_export(args: argparse.Namespace) -> None:
    """Write a regulator bundle of the cases decided on `--from..--to` (partition days)."""
    from pathlib import Path

    from hitl_gate.audit.bundle import BundleError, BundleScope, export_bundle
    from hitl_gate.audit.run_seal import reading_session
    from hitl_gate.audit.run_segments import Segments

    start, end = day_range(args.start, args.end, first="--from", last="--to")
    paths = resolve_paths(args)
    require_audit_db(paths)
    domain = None if args.domain in (None, "demo") else args.domain  # `demo`: every domain
    if domain is not None:
        load_selected_domain(args, domain)  # an unknown domain is named, with the known ones
    scope = BundleScope(start, end, domain)
    key = audit_signer(args)
    try:
        segments = Segments(paths.segments_dir)
        with reading_session(paths.audit_db, segments) as con:  # segment entries in place
            summary = export_bundle(con, scope, Path(args.out), key, segments)
    except BundleError as exc:
        raise SystemExit(f"audit export: {exc}") from exc
    print(
        f"bundle {summary.folder}: {summary.cases} cases, {summary.rows} lineage rows, "
        f"{summary.entries} log entries in {summary.checkpoints} signed ranges; checked OK"
    )


def cmd_audit_verify_bundle(args: argparse.Namespace) -> None:
    """Check a bundle on its own (no database); exit 1 naming what is wrong."""
    from pathlib import Path

    from hitl_gate.audit.bundle_check import check_bundle

    if not Path(args.bundle).is_dir():
        raise SystemExit(f"no bundle folder at {args.bundle}")
    report = check_bundle(Path(args.bundle), args.public_key)
    print(report.summary())
    if not report.ok:
        raise SystemExit(1)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `audit` command group."""
    audit = sub.add_parser("audit", help="auditor commands").add_subparsers(
        dest="audit_command", required=True
    )
    trace = audit.add_parser("trace", help="print the full path of one case")
    trace.add_argument("case_id")
    trace.add_argument(
        "--domain",
        dest="trace_domain",
        help="the domain of the case; needed when several domains hold the same id",
    )
    trace.set_defaults(func=cmd_audit_trace)
    verify = audit.add_parser("verify", help="check the hash chain and signed checkpoints")
    verify.add_argument(
        "--public-key",
        help="the trusted Ed25519 public key (hex) the checkpoints must chain to "
        "(default: HITL_AUDIT_TRUSTED_KEY or HITL_AUDIT_TRUSTED_KEY_FILE)",
    )
    verify.add_argument(
        "--chain-only", action="store_true", help="skip comparing lineage tables with the log"
    )
    verify.add_argument(
        "--witness",
        help="folder of the checkpoint witness to compare with (default: HITL_AUDIT_WITNESS_DIR, "
        "else <home>-witness)",
    )
    verify.add_argument(
        "--workers",
        type=int,
        default=1,
        help="check a log of 2M+ entries in this many processes, split at checkpoints",
    )
    verify.set_defaults(func=cmd_audit_verify)
    seal = audit.add_parser("seal", help="append unlogged lineage to the chain, sign a checkpoint")
    seal.set_defaults(func=cmd_audit_seal)
    sql = audit.add_parser(
        "sql", help="query the auditors' replica (read-only, refreshed after each seal)"
    )
    sql.add_argument("-c", dest="command_sql", metavar="SQL", help="run one statement and exit")
    sql.set_defaults(func=cmd_audit_sql)
    public = audit.add_parser("public-key", help="print the checkpoint signer's public key (hex)")
    public.set_defaults(func=cmd_audit_public_key)
    rotate = audit.add_parser("rotate-key", help="hand checkpoint signing over to a new token key")
    rotate.add_argument("--new-key-label", required=True, help="label of the new key in the token")
    rotate.set_defaults(func=cmd_audit_rotate_key)
    export = audit.add_parser(
        "export", help="write a self-contained bundle of the cases decided in a date range"
    )
    export.add_argument("--from", dest="start", required=True, type=day, help="first partition day")
    export.add_argument(
        "--to", dest="end", required=True, type=day, help="last partition day (inclusive)"
    )
    export.add_argument("--out", required=True, help="new (or empty) folder for the bundle")
    export.set_defaults(func=cmd_audit_export)
    check = audit.add_parser("verify-bundle", help="check an exported bundle without the database")
    check.add_argument("bundle", help="the bundle folder")
    check.add_argument("--public-key", help="Ed25519 public key (hex) that must have signed it")
    check.set_defaults(func=cmd_audit_verify_bundle)

"""Auditor commands: `hitl audit trace CASE_ID`."""

from __future__ import annotations

import argparse

from hitl_gate.cli.common import resolve_paths, selected_domain


def cmd_audit_trace(args: argparse.Namespace) -> None:
    """Print everything recorded about one case, from input file to executed action."""
    from hitl_gate.audit.trace import case_domain, format_trace, trace_case
    from hitl_gate.domain import load_domain

    paths = resolve_paths(args)
    # Case ids carry their domain in the audit database; --domain only disambiguates.
    name = args.domain or case_domain(paths.audit_db, args.case_id) or selected_domain(args)
    case_id_column = load_domain(name).case_id
    trace = trace_case(paths.audit_db, args.case_id, paths.warehouse, case_id_column)
    if trace is None:
        raise SystemExit(f"case {args.case_id}: not found in {paths.audit_db}")
    print(format_trace(trace))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `audit` command group."""
    audit = sub.add_parser("audit", help="auditor commands").add_subparsers(
        dest="audit_command", required=True
    )
    trace = audit.add_parser("trace", help="print the full path of one case")
    trace.add_argument("case_id")
    trace.set_defaults(func=cmd_audit_trace)

"""Data engineer commands: `hitl ingest check FILE`, `hitl quarantine list|show`."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.app.cli.common import (
    day,
    load_selected_domain,
    resolve_paths,
    selected_domain,
    settings_from,
)

if TYPE_CHECKING:
    from hitl_gate.core.domain import DomainConfig
    from hitl_gate.ingest.landing import IngestResult


def _partition_of(path: Path) -> date:
    """The day folder a landing file sits in, or today for a file checked elsewhere."""
    try:
        return date.fromisoformat(path.parent.name)
    except ValueError:
        return datetime.now(UTC).date()


def _withhold_cases_held_elsewhere(
    result: IngestResult, audit_db: Path, domain: DomainConfig, day: date
) -> tuple[IngestResult, str]:
    """Quarantine case ids the home's registry holds on other days, as the pipeline would.

    Read-only; without an audit database (no home yet) or while a run holds it, the file is
    judged on its own and the note says so.
    """
    import duckdb

    from hitl_gate.core.database import audit_connection
    from hitl_gate.ingest.landing import withhold_known_cases
    from hitl_gate.ingest.landing_registry import cases_accepted_elsewhere

    if not audit_db.is_file():
        return result, f"no audit database at {audit_db}: ids on other days were not checked"
    try:
        with audit_connection(audit_db, read_only=True) as con:
            known = cases_accepted_elsewhere(
                con, domain.name, result.accepted[domain.case_id], [day]
            )
    except duckdb.Error as exc:
        return result, f"audit database not readable now ({exc}): ids on other days not checked"
    note = f"case ids checked against {audit_db}: {known.height:,} already accepted on other days"
    return withhold_known_cases(result, known, domain.case_id), note


def cmd_ingest_check(args: argparse.Namespace) -> None:
    """Validate one file against the domain contract, write nothing, print what is wrong."""
    from hitl_gate.ingest.landing import fingerprint, ingest_files
    from hitl_gate.ingest.names import file_format, shown
    from hitl_gate.ingest.report import format_file_report
    from hitl_gate.quality.contract import contract_digest

    domain = load_selected_domain(args)
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"{shown(path)}: no such file")
    formats = domain.contract.formats
    if file_format(path.name) not in formats:
        raise SystemExit(
            f"{shown(path)}: not a landing file type the contract allows "
            f"(expected one of {', '.join('.' + f for f in formats)})"
        )
    day = _partition_of(path)
    result = ingest_files(
        [fingerprint(path, day)],
        domain.contract,
        domain.case_id,
        domain.case_id_pattern,
        settings_from(args).landing_max_gunzip_bytes,
    )
    result, registry_note = _withhold_cases_held_elsewhere(
        result, resolve_paths(args).audit_db, domain, day
    )
    digest = contract_digest(domain.contract)
    print(f"contract {domain.name} v{domain.contract.version} (digest {digest[:12]})")
    print(registry_note)
    print(format_file_report(result, max_examples=args.examples))
    if result.quarantine.height:
        raise SystemExit(1)


def cmd_quarantine_list(args: argparse.Namespace) -> None:
    """Quarantined rows per day, file and check, with counts."""
    from hitl_gate.core.database import audit_connection, query_frame
    from hitl_gate.ingest.report import format_table

    paths = resolve_paths(args)
    day = [args.partition] if args.partition else None
    with audit_connection(paths.audit_db, read_only=True) as con:
        frame = query_frame(
            con,
            "SELECT partition_date AS day, regexp_extract(file_path, '[^/]+$') AS file, "
            'left(file_sha256, 12) AS sha256, check_name AS "check", '
            "count(*) FILTER (WHERE row_number IS NOT NULL) AS rows, "
            "bool_or(row_number IS NULL) AS whole_file "
            "FROM quarantine WHERE domain = ? "
            "AND (?::DATE[] IS NULL OR partition_date IN (SELECT unnest(?::DATE[]))) "
            'GROUP BY ALL ORDER BY day, file, "check"',
            [selected_domain(args), day, day],
        )
    print(format_table(frame))
    print(f"\n{frame.height} file/check groups; `hitl quarantine show SHA256|CASE_ID` for rows")


def cmd_quarantine_show(args: argparse.Namespace) -> None:
    """Every quarantine entry of one file (by SHA-256 or its prefix) or one case id."""
    from hitl_gate.core.database import audit_connection, query_frame

    paths = resolve_paths(args)
    key = args.key
    with audit_connection(paths.audit_db, read_only=True) as con:
        frame = query_frame(
            con,
            "SELECT partition_date AS day, file_path AS file, row_number AS row, case_id, "
            'column_name AS "column", check_name AS "check", value, message FROM quarantine '
            "WHERE domain = ? AND (case_id = ? OR (length(?) >= 8 AND starts_with(file_sha256, ?)))"
            " ORDER BY day, file, row_number NULLS FIRST, column_name",
            [selected_domain(args), key, key, key.lower()],
        )
    if frame.height == 0:
        raise SystemExit(f"nothing quarantined for {key!r} in {paths.audit_db}")
    for entry in frame.head(args.limit).iter_rows(named=True):
        print(f"{entry['day']}  {entry['file']}  [{entry['check']}]")
        print(f"    {entry['message']}")
    if frame.height > args.limit:
        print(f"\n... {frame.height - args.limit} more (use --limit)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `ingest` and `quarantine` command groups."""
    ingest = sub.add_parser("ingest", help="data contract commands").add_subparsers(
        dest="ingest_command", required=True
    )
    check = ingest.add_parser(
        "check", help="validate one file against the domain contract (writes nothing)"
    )
    check.add_argument("file")
    check.add_argument("--examples", type=int, default=10, help="failing rows to print")
    check.set_defaults(func=cmd_ingest_check)

    quarantine = sub.add_parser("quarantine", help="inspect quarantined rows").add_subparsers(
        dest="quarantine_command", required=True
    )
    listing = quarantine.add_parser("list", help="quarantined rows per day, file and check")
    listing.add_argument("--partition", type=day, help="only this day, YYYY-MM-DD")
    listing.set_defaults(func=cmd_quarantine_list)
    show = quarantine.add_parser("show", help="quarantined rows of one file or one case")
    show.add_argument("key", help="file SHA-256 (or a prefix of 8+ characters) or a case id")
    show.add_argument("--limit", type=int, default=50)
    show.set_defaults(func=cmd_quarantine_show)

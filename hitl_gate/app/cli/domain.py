"""Domain commands: `hitl domain init NAME --from FILE`, `hitl domain check NAME`, `list`.

Onboarding a decision domain is configuration only: `init` scaffolds the declarations from a
sample of historical cases with outcomes, the team edits them, `check` validates them. With
`--root DIR` (or `--domains-dir`), the files go to a folder outside the checkout.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from hitl_gate.app.cli.common import day, domain_names, settings_from
from hitl_gate.core.domain import PROJECT_ROOT


def _root(args: argparse.Namespace) -> Path:
    """Where `init` writes: `--root`, else the parent of `$HITL_DOMAINS_DIR`, else the project."""
    if args.root:
        return Path(args.root).resolve()
    extra = settings_from(args).domains_dirs
    return extra[0].parent if extra else PROJECT_ROOT


def cmd_init(args: argparse.Namespace) -> None:
    """Scaffold `domains/NAME/domain.yaml` and `policies/NAME/v1.yaml` from a sample file."""
    from hitl_gate.app.scaffold import ScaffoldError, ScaffoldOptions, scaffold_domain

    options = ScaffoldOptions(
        name=args.name,
        source=Path(args.source).resolve(),
        label=args.label,
        positive=args.positive,
        case_id=args.case_id,
        event_time=args.event_time,
        outcomes=args.outcome or [],
        owner=args.owner,
        start=args.start,
        days=args.days,
        review_share=args.review_share,
    )
    root = _root(args)
    try:
        made = scaffold_domain(options, root=root, force=args.force)
    except ScaffoldError as exc:
        raise SystemExit(f"domain init: {exc}") from exc
    domains_dir = made.domain_file.parent.parent
    print(f"{args.name}: declarations written")
    print(f"  {made.domain_file}")
    print(f"  {made.policy_file}")
    print(f"  case id {made.case_id}, event time {made.event_time}, {made.columns} columns")
    print(f"  model features: {', '.join(made.features)}")
    print(f"  positive ({args.label} in {args.positive}) rate: {made.positive_rate:.2%}")
    for note in made.notes:
        print(f"  screening: {note}")
    hint = "" if root == PROJECT_ROOT else f"--domains-dir {domains_dir} "
    print(f"Next: review the files, then `hitl {hint}domain check {args.name}`")


def cmd_check(args: argparse.Namespace) -> None:
    """Validate a domain's declarations; exit 1 listing every problem."""
    from hitl_gate.app.domain_check import check_domain

    known = domain_names(args)
    if args.name not in known:
        raise SystemExit(f"unknown domain {args.name!r}; known domains: {', '.join(known)}")
    problems = check_domain(args.name, settings_from(args).domains_dirs)
    if problems:
        print(f"{args.name}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        raise SystemExit(1)
    print(f"{args.name}: declarations are valid")


def cmd_list(args: argparse.Namespace) -> None:
    """Every declared domain and the file it comes from."""
    from hitl_gate.core.domain import domain_files

    for name, path in domain_files(settings_from(args).domains_dirs).items():
        print(f"{name:<24} {path}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `domain` command group."""
    domain = sub.add_parser("domain", help="onboard and validate decision domains")
    group = domain.add_subparsers(dest="domain_command", required=True)

    init = group.add_parser("init", help="scaffold declarations from a sample of past cases")
    init.add_argument("name", help="domain name (lower case, digits, _)")
    init.add_argument("--from", dest="source", required=True, help="CSV or Parquet sample")
    init.add_argument("--label", required=True, help="outcome column the model learns")
    init.add_argument(
        "--positive", action="append", required=True, help="bad outcome value (repeatable)"
    )
    init.add_argument("--outcome", action="append", help="other column known only later")
    init.add_argument("--case-id", help="case id column (default: detected)")
    init.add_argument("--event-time", help="decision time column (default: detected)")
    init.add_argument("--owner", help="owning team's address")
    init.add_argument(
        "--start",
        default=date(2024, 1, 1),
        type=day,
        help="without a time column: first day to spread over",
    )
    init.add_argument("--days", type=int, default=90, help="without a time column: days to use")
    init.add_argument(
        "--review-share",
        type=float,
        help="share of cases the starter policy sends to review, e.g. 0.15 (bands placed on "
        "the validation rows)",
    )
    init.add_argument("--root", help="folder to write domains/ and policies/ into")
    init.add_argument("--force", action="store_true", help="overwrite existing declarations")
    init.set_defaults(func=cmd_init)

    check = group.add_parser("check", help="validate a domain's declarations")
    check.add_argument("name")
    check.set_defaults(func=cmd_check)

    listing = group.add_parser("list", help="list declared domains")
    listing.set_defaults(func=cmd_list)

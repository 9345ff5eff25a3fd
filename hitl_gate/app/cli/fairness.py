"""`hitl fairness report --from D --to D`: fair-lending monitoring of a period, per protected
attribute and stage, and whether human review widened or narrowed each gap.

Reads the audit database and the stored validated cases (the only reader of the protected
columns besides the `decision_metrics` asset); writes nothing. Exit status 1 when the adverse
impact check fails at its block threshold, so a scheduled report can page someone.
"""

from __future__ import annotations

import argparse

from hitl_gate.app.cli.common import day, require_audit_db
from hitl_gate.app.day_range import day_range


def cmd_fairness_report(args: argparse.Namespace) -> None:
    """Print the period's fairness table, review effect and checks."""
    import polars as pl
    import polars.selectors as cs

    from hitl_gate.app.cli.common import load_selected_domain, resolve_paths
    from hitl_gate.core.database import audit_connection
    from hitl_gate.observability.fairness_period import period_report
    from hitl_gate.observability.metrics import default_decline_bands

    paths = resolve_paths(args)
    domain = load_selected_domain(args)
    day_range(args.start, args.end)
    if not domain.protected_attributes:
        raise SystemExit(
            f"{domain.name}: no protected_attributes declared in its domain.yaml; nothing to "
            "measure (docs/compliance.md)"
        )
    require_audit_db(paths)
    bands = args.decline_band or default_decline_bands(list(domain.model.bands))
    with audit_connection(paths.audit_db, read_only=True) as con:
        report = period_report(con, paths.warehouse, domain, args.start, args.end, bands)
    print(
        f"{report.domain}: fairness from {report.start} to {report.end}, {report.cases} cases "
        f"(decline bands {', '.join(bands)})"
    )
    if args.csv:
        print(report.table.write_csv(), end="")
        return
    shown = report.table.select(
        "attribute", "stage", "group", "reference", "n", "approvals",
        pl.col("approval_rate").round(3), pl.col("air").round(3),
        pl.col("air_low").round(3), pl.col("air_high").round(3), pl.col("smd").round(3),
    )  # fmt: skip
    with pl.Config(
        tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):  # fmt: skip
        print(shown)
        print("\nreview effect on the adverse impact ratio (negative: review widened the gap)")
        print(report.review.with_columns(cs.float().round(3)))
    for finding in report.findings.all():
        print(f"- {finding.describe()}")
    impact = report.findings.adverse_impact
    if not impact.passed and impact.severity == "ERROR":
        raise SystemExit(1)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fairness` command group."""
    group = sub.add_parser("fairness", help="fair-lending monitoring").add_subparsers(
        dest="fairness_command", required=True
    )
    report = group.add_parser("report", help="adverse impact and score gaps over a period")
    report.add_argument("--from", dest="start", type=day, required=True, help="first day")
    report.add_argument("--to", dest="end", type=day, required=True, help="last day")
    report.add_argument(
        "--decline-band", action="append", help="band proposing decline (default: upper half)"
    )
    report.add_argument("--csv", action="store_true", help="print the table as CSV")
    report.set_defaults(func=cmd_fairness_report)

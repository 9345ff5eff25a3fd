"""Supervisor commands: `hitl review quality --from --to` and `hitl review remind`."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from hitl_gate.app.cli.common import load_selected_domain, settings_from


def _day(text: str) -> datetime:
    """A day (YYYY-MM-DD) as its UTC midnight."""
    try:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from error


def _number(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(frame: pl.DataFrame) -> list[str]:
    rows = [frame.columns, *[[_number(v) for v in row] for row in frame.iter_rows()]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(frame.columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]


def cmd_review_quality(args: argparse.Namespace) -> None:
    """Reviewer quality of one domain over [--from, --to) (days, UTC; --to inclusive)."""
    from hitl_gate.core.database import audit_connection
    from hitl_gate.review.quality import Period, quality_report

    paths = settings_from(args).paths
    domain = load_selected_domain(args)
    start, end = args.start, args.end + timedelta(days=1)
    if end <= start:
        raise SystemExit(f"--to {args.end:%Y-%m-%d} is before --from {start:%Y-%m-%d}")
    if not paths.audit_db.exists():
        raise SystemExit(f"{paths.audit_db}: no audit database yet (run the pipeline first)")
    with audit_connection(paths.audit_db, read_only=True) as con:
        report = quality_report(con, domain.name, Period(start, end))
    print(f"{domain.name}: reviewer quality {start:%Y-%m-%d} to {args.end:%Y-%m-%d} (UTC)")
    if report.reviewers.is_empty():
        print("  no opinions received in the period")
    else:
        for line in _table(report.reviewers):
            print("  " + line)
    print("four-eyes agreement (Cohen's kappa, 95% Fleiss-Cohen-Everitt interval):")
    if not report.pairs:
        print("  no four-eyes pairs in the period")
    for pair in report.pairs:
        k = pair.kappa
        interval = f"[{_number(k.low)}, {_number(k.high)}]" if k.low is not None else ""
        note = f"  ({k.note})" if k.note else ""
        print(f"  {pair.first} + {pair.second}: n={k.n} kappa={_number(k.kappa)} {interval}{note}")


def cmd_review_remind(args: argparse.Namespace) -> None:
    """Send the reminders owed now (each once) for one domain."""
    from hitl_gate.core.database import audit_connection
    from hitl_gate.review.reminders import notifier_for, send_reminders
    from hitl_gate.review.settings import review_settings

    paths = settings_from(args).paths
    domain = load_selected_domain(args)
    settings = review_settings(domain)
    if settings is None:
        raise SystemExit(f"{domain.name}: no review settings, no reminders")
    notes = settings.notifications
    with audit_connection(paths.audit_db) as con:
        notifier = notifier_for(notes, paths.home / "notifications")
        lead = timedelta(hours=notes.remind_hours_before)
        run = send_reminders(con, domain.name, notifier, datetime.now(UTC), lead)
    print(f"{domain.name}: {len(run.sent)} reminder(s) sent, {len(run.failed)} failed")
    for reminder, reason in sorted(run.failed.items()):
        print(f"  {reminder}: {reason}")
    if run.failed:
        raise SystemExit(1)


def register(review: argparse._SubParsersAction) -> None:
    """Add `review quality` and `review remind` to the `review` group."""
    quality = review.add_parser("quality", help="reviewer quality: overrides, time, kappa, gold")
    quality.add_argument("--from", dest="start", type=_day, required=True, help="first day")
    quality.add_argument("--to", dest="end", type=_day, required=True, help="last day")
    quality.set_defaults(func=cmd_review_quality)
    remind = review.add_parser("remind", help="send reminders of batches due soon (once each)")
    remind.set_defaults(func=cmd_review_remind)

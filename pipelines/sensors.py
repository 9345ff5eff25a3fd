"""Sensors: returned verdict files start the review loop for the day their batch belongs to;
files landing late in a day that already ran start a re-run of that day."""

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.intake.inbox import inbox_files, returned_files
from hitl_gate.review.intake.received import escaped, shown_name
from hitl_gate.review.reminders import ReminderRun
from pipelines.jobs import review_loop_job_name
from pipelines.resources import AuditDatabase, ReviewWorkspace


def build_verdict_sensor(domain: DomainConfig) -> SensorDefinition:
    """Watch the review inbox; one run per new file, keyed by its SHA-256 (exactly once)."""

    @sensor(
        name=f"{domain.name}_verdict_inbox",
        job_name=review_loop_job_name(domain),
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Starts the review loop when a reviewer returns a verdict file to the inbox; the "
            "run key is the file's content hash, so a file is never ingested twice."
        ),
    )
    def verdict_inbox(context: SensorEvaluationContext, review: ReviewWorkspace):
        now = datetime.now(UTC)
        requests = [
            RunRequest(
                run_key=returned.intake_key(),
                partition_key=returned.day.isoformat(),
                tags={
                    "hitl/verdict_file": shown_name(review.inbox_dir, returned.path)[:200],
                    "hitl/batch_id": escaped(returned.batch_id or "")[:200],
                },
            )
            for returned in inbox_files(review.inbox_dir, domain)
            if returned.day is not None and returned.ready(now)
        ]
        return requests or SkipReason("no new verdict files in the inbox")

    return verdict_inbox


def remind(
    domain: DomainConfig, review: ReviewWorkspace, audit_db: AuditDatabase, now: datetime
) -> ReminderRun:
    """Send the domain's owed reminders (each once; review/reminders.py)."""
    from hitl_gate.review.reminders import notifier_for, send_reminders
    from hitl_gate.review.settings import review_settings

    settings = review_settings(domain)
    if settings is None or not review.notifications_dir:
        return ReminderRun((), {})
    notes = settings.notifications
    notifier = notifier_for(notes, Path(review.notifications_dir))
    with audit_db.connect() as con:
        return send_reminders(
            con, domain.name, notifier, now, timedelta(hours=notes.remind_hours_before)
        )


def build_review_sweep_sensor(domain: DomainConfig) -> SensorDefinition:
    """Every 15 minutes: record strays, escalate SLA breaches (and re-export), close batches,
    send reminders of batches due soon."""

    @sensor(
        name=f"{domain.name}_review_sweep",
        job_name=review_loop_job_name(domain),
        minimum_interval_seconds=900,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Safety net of the review loop: files in the inbox or archive not yet recorded are "
            "(re)submitted, cases past their SLA are escalated (alert line per case), "
            "escalated cases are re-exported to their escalation queue by a review-loop run "
            "for their day, batches past due plus grace are closed, and reminders of batches "
            "due soon are sent (once each)."
        ),
    )
    def review_sweep(
        context: SensorEvaluationContext, review: ReviewWorkspace, audit_db: AuditDatabase
    ):
        from hitl_gate.review.intake.sweep import sweep_review
        from hitl_gate.review.settings import review_settings

        now = datetime.now(UTC)
        with audit_db.connect() as con:
            report = sweep_review(
                con,
                domain=domain.name,
                settings=review_settings(domain),
                review_dir=Path(review.review_dir),
                now=now,
            )
        if report.escalations:
            context.log.warning(f"{report.escalations} review case(s) escalated past their SLA")
        for failed in remind(domain, review, audit_db, now).failed.values():
            context.log.warning(f"reminder not sent (retried next sweep): {failed}")
        requests = [
            RunRequest(
                # Retried at most hourly if an earlier run for the same bytes failed.
                run_key=f"sweep-{returned.intake_key()}-{now:%Y%m%d%H}",
                partition_key=returned.day.isoformat(),
                tags={
                    "hitl/verdict_file": shown_name(review.inbox_dir, returned.path)[:200],
                    "hitl/sweep": "true",
                },
            )
            for returned in returned_files(report.unrecorded, domain)
            if returned.day is not None
        ]
        for day, escalation_ids in sorted(report.to_export.items()):
            # Keyed by the set of escalations: each set is exported by exactly one run.
            digest = hashlib.sha256("\n".join(sorted(escalation_ids)).encode()).hexdigest()
            requests.append(
                RunRequest(
                    run_key=f"escalate-{day.isoformat()}-{digest[:16]}",
                    partition_key=day.isoformat(),
                    tags={"hitl/escalations": str(len(escalation_ids)), "hitl/sweep": "true"},
                )
            )
        return requests or SkipReason(
            f"swept: {report.escalations} escalated, {report.closed} batches closed"
        )

    return review_sweep


def build_landing_sensor(domain: DomainConfig) -> SensorDefinition:
    """Re-run a day when files land in its folder after it ran (late or re-delivered data)."""
    from assets.common import stage_key
    from pipelines.jobs import daily_job_name
    from pipelines.resources import LandingZone

    raw_cases = stage_key(domain, "raw_cases")

    @sensor(
        name=f"{domain.name}_landing_zone",
        job_name=daily_job_name(domain),
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Re-runs a day when a file whose bytes the registry has not seen lands in the "
            "folder of a day that already ran; the run key is the file's SHA-256, so each "
            "delivery starts one run and the registry counts its rows once."
        ),
    )
    def landing_zone(
        context: SensorEvaluationContext, landing: LandingZone, audit_db: AuditDatabase
    ):
        import duckdb

        from hitl_gate.ingest.late_files import known_files, late_deliveries
        from hitl_gate.ingest.listing import landing_rules
        from hitl_gate.ingest.names import shown

        ran = {
            date.fromisoformat(key)
            for key in context.instance.get_materialized_partitions(raw_cases)
        }
        if not ran:
            return SkipReason("no day has run yet; the schedule takes new days")
        try:
            with audit_db.connect(read_only=True) as con:
                known = known_files(con, domain.name)
        except duckdb.Error as exc:
            return SkipReason(f"audit database not readable now, next tick retries: {exc}")
        rules = landing_rules(domain, landing.settle_seconds)
        late = late_deliveries(landing.path / domain.landing_subdir, ran, known, rules)
        return [
            RunRequest(
                run_key=delivery.run_key,
                partition_key=delivery.day.isoformat(),
                tags={
                    "hitl/late_files": ",".join(shown(f.path.name) for f in delivery.files)[:200],
                    "hitl/trigger": "landing_zone",
                },
            )
            for delivery in late
        ] or SkipReason("no new files in folders of days that already ran")

    return landing_zone

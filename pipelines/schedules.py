"""Schedules: each domain's daily pipeline runs for the previous day."""

from __future__ import annotations

from dagster import ScheduleDefinition, build_schedule_from_partitioned_job

from pipelines.jobs import AssetJob


def build_daily_schedule(job: AssetJob) -> ScheduleDefinition:
    """Run the day's partition at 02:00 UTC, once the day's files have landed."""
    return build_schedule_from_partitioned_job(job, hour_of_day=2, minute_of_hour=0)

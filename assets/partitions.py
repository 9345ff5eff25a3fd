"""Daily partitions: one partition per landing-zone day of a domain."""

from __future__ import annotations

from datetime import date

from dagster import AssetCheckExecutionContext, AssetExecutionContext, DailyPartitionsDefinition

from hitl_gate.domain import DomainConfig


def daily_partitions(domain: DomainConfig) -> DailyPartitionsDefinition:
    """Daily partitions from the domain's first landing day onwards."""
    return DailyPartitionsDefinition(start_date=domain.start_date.isoformat())


def partition_days(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[date]:
    """The days a run covers: one for a daily run, several for a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]

"""Daily partitions: one partition per landing-zone day of a domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DailyPartitionsDefinition,
    asset,
)

from hitl_gate.domain import DomainConfig


def daily_partitions(domain: DomainConfig) -> DailyPartitionsDefinition:
    """Daily partitions from the domain's first landing day onwards."""
    return DailyPartitionsDefinition(start_date=domain.start_date.isoformat())


def partition_days(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[date]:
    """The days a run covers: one for a daily run, several for a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def daily_stage_asset(domain: DomainConfig, key: AssetKey, **kwargs: Any) -> Callable:
    """`@asset` for a daily stage of `domain`: its group, its partitions, single-run backfills.

    Every pipeline stage shares these settings; a range of days runs as one step per stage.
    """
    return asset(
        key=key,
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
        **kwargs,
    )

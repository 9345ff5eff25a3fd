"""Daily partitions: one partition per landing-zone day of a domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DailyPartitionsDefinition,
    asset,
)

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.settings import HitlSettings


def daily_partitions(domain: DomainConfig) -> DailyPartitionsDefinition:
    """One partition per day of the domain's declared data window (`data_window` in its yaml).

    Dagster's `end_date` is exclusive, hence the day after the window's last day; an open
    window (a live domain) runs up to today.
    """
    window = domain.data_window
    end = window.end + timedelta(days=1) if window.end is not None else None
    return DailyPartitionsDefinition(
        start_date=window.start.isoformat(), end_date=end.isoformat() if end else None
    )


def partition_days(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[date]:
    """The days a run covers: one for a daily run, several for a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def backfill_policy_for(settings: HitlSettings) -> BackfillPolicy:
    """How a backfill splits into runs, by deployment configuration (`HITL_BACKFILL_RUNS`).

    `single` (default): one run for the whole range, each stage one step over every day; on
    one machine this is by far the cheapest (a run's fixed cost is paid once; BENCHMARKS.md).
    `per_partition`: one run per day, which a cluster runs in parallel (docs/scaling.md).
    A number N: runs of at most N days each. The definitions apply it to every daily stage.
    """
    if settings.backfill_days_per_run is None:
        return BackfillPolicy.single_run()
    return BackfillPolicy.multi_run(settings.backfill_days_per_run)


def daily_stage_asset(domain: DomainConfig, key: AssetKey, **kwargs: Any) -> Callable:
    """`@asset` for a daily stage of `domain`: its group, its partitions, its backfill policy.

    Every pipeline stage shares these settings; a range of days runs as one step per stage
    unless the deployment splits backfills (`backfill_policy_for`, applied by the definitions).
    """
    return asset(
        key=key,
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
        **kwargs,
    )

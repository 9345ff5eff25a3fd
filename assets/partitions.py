"""Daily partitions: one partition per landing-zone day of a domain."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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

from hitl_gate.core.domain import DomainConfig


def daily_partitions(domain: DomainConfig) -> DailyPartitionsDefinition:
    """Daily partitions from the domain's first landing day onwards."""
    return DailyPartitionsDefinition(start_date=domain.start_date.isoformat())


def partition_days(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[date]:
    """The days a run covers: one for a daily run, several for a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


BACKFILL_ENV = "HITL_BACKFILL_RUNS"


def backfill_policy_from_environment(environ: Mapping[str, str] | None = None) -> BackfillPolicy:
    """How a backfill splits into runs, by deployment configuration (`HITL_BACKFILL_RUNS`).

    `single` (default): one run for the whole range, each stage one step over every day; on
    one machine this is by far the cheapest (a run's fixed cost is paid once; BENCHMARKS.md).
    `per_partition`: one run per day, which a cluster runs in parallel (docs/scaling.md).
    A number N: runs of at most N days each.
    """
    env = os.environ if environ is None else environ
    choice = env.get(BACKFILL_ENV, "").strip() or "single"
    if choice == "single":
        return BackfillPolicy.single_run()
    if choice == "per_partition":
        return BackfillPolicy.multi_run(1)
    if choice.isdigit() and int(choice) >= 1:
        return BackfillPolicy.multi_run(int(choice))
    raise ValueError(
        f"{BACKFILL_ENV}={choice!r}: expected single, per_partition or a number of days per run"
    )


def daily_stage_asset(domain: DomainConfig, key: AssetKey, **kwargs: Any) -> Callable:
    """`@asset` for a daily stage of `domain`: its group, its partitions, its backfill policy.

    Every pipeline stage shares these settings; by default a range of days runs as one step
    per stage (`backfill_policy_from_environment`).
    """
    return asset(
        key=key,
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=backfill_policy_from_environment(),
        **kwargs,
    )

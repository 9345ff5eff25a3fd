"""The routing stage of one run: the policy in force routes the run's days, whole or in slices.

What decides the route of a case, in order: the policy in force (latest activation, else the
domain's declaration) with its review queues' capacity from the review settings; the kill
switch; the backlog of cases still waiting from earlier days. A day larger than `slice_rows`
is routed in slices (`hitl_gate.routing.sliced`) with the same result, unless a shadow policy
is set: that compares whole days of cases, so such a day is routed whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from hitl_gate.core.database import OpenConnection, transaction
from hitl_gate.core.day_files import PartitionWriter, StagedPartitions
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import row_count, slice_ranges
from hitl_gate.routing.backlog import load_backlog
from hitl_gate.routing.cases import Scans, assemble_cases
from hitl_gate.routing.decisions import (
    decision_rows,
    delete_decisions,
    insert_decisions,
    raise_for_policy_errors,
    record_policy_version,
)
from hitl_gate.routing.shadow import ShadowRun, run_shadow
from policies.control import HaltState
from policies.model import Policy


@dataclass(frozen=True)
class RoutedDays:
    """The routing step's result: what it returns, and what its metadata is made of.

    `decided` is the routed rows, or for a day routed in slices the narrow frame with the
    route and capacity columns; `slices` is the number of slices (None: routed whole).
    """

    output: pl.DataFrame | StagedPartitions
    decided: pl.DataFrame
    policy: Policy
    origin: str
    halt: HaltState
    backlog: pl.DataFrame
    capacity: pl.DataFrame
    slices: int | None
    shadow: ShadowRun | None


def route_days(
    domain: DomainConfig,
    scans: Scans,
    connect: OpenConnection,
    folder: Path,
    new_writer: Callable[[], PartitionWriter],
    days: list[date],
    *,
    run_id: str,
    slice_rows: int,
    warn: Callable[[str], None],
) -> RoutedDays:
    """Route the run's cases (`scans`) and record their decisions in the audit database.

    `folder` is the stage's own folder of day files (the backlog is read from it, the spills
    of a sliced day are made in it); `new_writer` makes the writer of those files for a
    sliced day; `warn` is told of a halt and of a shadow policy that could not run.
    Raises `InvalidPolicy` when the policy in force does not validate on the day's cases.
    """
    from hitl_gate.review.settings import review_settings
    from policies.control import halt_state, policy_in_force, shadow_policy
    from policies.decide import capacity_report, decide, with_queue_capacity

    with connect() as con:
        in_force = policy_in_force(con, domain)
        halt = halt_state(con, domain.name)
        shadow = shadow_policy(con, domain.name)
    settings = review_settings(domain)
    policy = with_queue_capacity(
        in_force.policy,
        {q: s.daily_capacity for q, s in settings.queues.items()} if settings else {},
    )
    if halt.halted:
        warn(
            f"automation of {domain.name} is HALTED by {halt.actor} ({halt.reason}): "
            "every automatic route goes to human review"
        )
    backlog = load_backlog(domain, connect, folder, min(days))
    ranges = slice_ranges(row_count(scans[0]), slice_rows)

    def result(
        output: pl.DataFrame | StagedPartitions,
        decided: pl.DataFrame,
        slices: int | None,
        shadow_run: ShadowRun | None,
    ) -> RoutedDays:
        return RoutedDays(
            output, decided, policy, in_force.origin, halt, backlog,
            capacity_report(policy, decided, backlog), slices, shadow_run,
        )  # fmt: skip

    if len(ranges) > 1 and shadow is None:
        from hitl_gate.routing.sliced import route_in_slices

        sliced = route_in_slices(
            domain, policy, scans, connect, folder, new_writer, ranges,
            halted=halt.halted, backlog=backlog, run_id=run_id, days=days,
        )  # fmt: skip
        return result(sliced.output, sliced.decided, len(ranges), None)
    cases = assemble_cases(domain, *scans)
    raise_for_policy_errors(policy, cases)
    routed = decide(policy, cases, domain.case_id, halted=halt.halted, backlog=backlog)
    now = datetime.now(UTC)
    shadow_run = None
    if shadow is not None:
        shadow_run = run_shadow(
            domain, shadow, cases, routed, connect, days,
            halted=halt.halted, run_id=run_id, now=now,
        )  # fmt: skip
        if shadow_run.problems:
            warn(f"shadow policy {shadow.version} not run: {shadow_run.problems[0]}")
    del cases  # every column of it is in `routed`: one day-sized frame less from here on
    decisions = decision_rows(domain, routed, run_id, now)
    with connect() as con, transaction(con):  # the days' decisions replaced atomically
        record_policy_version(con, domain, policy, now)
        delete_decisions(con, domain, days)
        insert_decisions(con, decisions)
    return result(routed, routed, None, shadow_run)

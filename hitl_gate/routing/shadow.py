"""The shadow policy's run beside the live one: routed, stored, compared, never acted on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from hitl_gate.core.database import OpenConnection
from hitl_gate.core.domain import DomainConfig
from hitl_gate.routing.decisions import policy_errors
from policies.model import Policy
from policies.shadow import ShadowComparison


@dataclass(frozen=True)
class ShadowRun:
    """The shadow policy and either why it was not run (`problems`) or its `comparison`."""

    policy: Policy
    problems: list[str]
    comparison: ShadowComparison | None


def run_shadow(
    domain: DomainConfig,
    shadow: Policy,
    cases: pl.DataFrame,
    routed: pl.DataFrame,
    connect: OpenConnection,
    days: list[date],
    *,
    halted: bool,
    run_id: str,
    now: datetime,
) -> ShadowRun:
    """Route the day's cases with the shadow policy; store its decisions and compare.

    A shadow policy that does not validate on the day's cases is not run (its problems are
    returned) and the live run goes on: a candidate must never break live routing.
    """
    from policies.control import record_shadow_decisions
    from policies.shadow import compare_shadow, shadow_decisions

    problems = policy_errors(shadow, cases)
    if problems:
        return ShadowRun(shadow, problems, None)
    rows = shadow_decisions(
        shadow, cases, routed, case_id=domain.case_id, domain=domain.name, halted=halted,
        run_id=run_id, now=now,
    )  # fmt: skip
    with connect() as con:
        record_shadow_decisions(con, rows, domain.name, days, shadow.digest)
    return ShadowRun(shadow, [], compare_shadow(rows))

"""The one Dagster `Definitions` of hitl-gate: every declared domain, its jobs, schedule and sensor.

Domains are discovered from `domains/*/domain.yaml`; all resources derive from one home folder
(`HITL_HOME`, default `.hitl/`). Runs execute in process unless `HITL_EXECUTOR` says otherwise
(`pipelines/executors.py`): the steps are short and the heavy imports (Feast, MLflow) would
otherwise be paid again by a subprocess per step (docs/scaling.md). For a cluster, set the executor
and the run launcher in configuration (docs/scaling.md).
"""

from __future__ import annotations

import warnings

from dagster import BetaWarning, Definitions

from assets.factory import build_domain_assets, build_domain_checks
from hitl_gate.core.domain import DomainConfig, available_domains, load_domain
from hitl_gate.core.home import HitlPaths
from pipelines.executors import executor_from_environment
from pipelines.jobs import build_jobs
from pipelines.resources import build_resources
from pipelines.schedules import build_daily_schedule
from pipelines.sensors import (
    build_landing_sensor,
    build_review_sweep_sensor,
    build_verdict_sensor,
)


def build_definitions(paths: HitlPaths, domains: list[DomainConfig]) -> Definitions:
    """Definitions for `domains`, with every resource rooted at `paths`."""
    assets, checks, jobs, schedules, sensors = [], [], [], [], []
    for domain in domains:
        with warnings.catch_warnings():
            # Single-run backfills (`backfill_policy`) are beta in Dagster 1.13; we rely on them
            # knowingly, so a range of days runs as one step per asset.
            warnings.simplefilter("ignore", BetaWarning)
            assets += build_domain_assets(domain)
        checks += build_domain_checks(domain)
        domain_jobs = build_jobs(domain)
        jobs += domain_jobs
        schedules.append(build_daily_schedule(domain_jobs[0]))
        sensors.append(build_verdict_sensor(domain))
        sensors.append(build_review_sweep_sensor(domain))
        sensors.append(build_landing_sensor(domain))
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=build_resources(paths),
        executor=executor_from_environment(),
    )


defs = build_definitions(HitlPaths.from_env(), [load_domain(n) for n in available_domains()])

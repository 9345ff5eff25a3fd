"""The one Dagster `Definitions` of hitl-gate: every declared domain, its jobs, schedule and sensor.

Domains are discovered from `domains/*/domain.yaml` (and `HITL_DOMAINS_DIR`); all resources
derive from one home folder (`HITL_HOME`, default `.hitl/`). This module is an edge: `defs` reads
the environment once into `HitlSettings` for `dagster dev -w workspace.yaml`; the CLI builds its
own settings and calls `build_definitions`. Runs execute in process unless `HITL_EXECUTOR` says
otherwise (`pipelines/executors.py`): the steps are short and the heavy imports (Feast, MLflow)
would otherwise be paid again by a subprocess per step (docs/scaling.md). For a cluster, set the
executor and the run launcher in configuration (docs/scaling.md).
"""

from __future__ import annotations

import os
import warnings

from dagster import (
    AssetsDefinition,
    BetaWarning,
    Definitions,
    map_asset_specs,
)

from assets.factory import build_domain_assets, build_domain_checks
from assets.partitions import backfill_policy_for
from hitl_gate.core.domain import DomainConfig, available_domains, load_domain
from hitl_gate.core.settings import HitlSettings
from pipelines.code_references import with_code_references
from pipelines.executors import executor_for
from pipelines.jobs import build_jobs
from pipelines.resources import build_resources
from pipelines.schedules import build_daily_schedule
from pipelines.sensors import (
    build_landing_sensor,
    build_review_sweep_sensor,
    build_verdict_sensor,
)


def described(domain: DomainConfig, assets: list[AssetsDefinition]) -> list[AssetsDefinition]:
    """The domain's assets with what the Dagster UI shows beside them: their owner (the
    domain's data owner, `features.owner`) and a reference to the code that builds them."""
    owned = map_asset_specs(
        lambda spec: spec.replace_attributes(owners=[domain.features.owner]), assets
    )
    return with_code_references([a for a in owned if isinstance(a, AssetsDefinition)])


def build_definitions(
    settings: HitlSettings, domains: list[DomainConfig] | None = None
) -> Definitions:
    """Definitions for `domains` (default: every declared one), rooted at the settings' paths."""
    if domains is None:
        domains = [
            load_domain(n, settings.domains_dirs) for n in available_domains(settings.domains_dirs)
        ]
    backfill_policy = backfill_policy_for(settings)
    assets, checks, jobs, schedules, sensors = [], [], [], [], []
    for domain in domains:
        with warnings.catch_warnings():
            # Single-run backfills (`backfill_policy`) are beta in Dagster 1.13; we rely on them
            # knowingly, so a range of days runs as one step per asset.
            warnings.simplefilter("ignore", BetaWarning)
            assets += described(
                domain,
                [
                    a.with_attributes(backfill_policy=backfill_policy) if a.partitions_def else a
                    for a in build_domain_assets(domain)
                ],
            )
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
        resources=build_resources(settings),
        executor=executor_for(settings),
    )


defs = build_definitions(HitlSettings.from_environ(os.environ))

"""Jobs per domain: the daily pipeline, model training, and the review loop."""

from __future__ import annotations

from typing import Any, TypeAlias

from dagster import AssetSelection, define_asset_job

from assets.common import stage_key
from assets.factory import PIPELINE_STAGES, REVIEW_LOOP_STAGES, TRAINING_STAGE
from hitl_gate.core.domain import DomainConfig

# What `define_asset_job` returns: an asset job that `Definitions` resolves against the asset
# graph. Dagster exports the function but keeps the class in a private module
# (`dagster._core.definitions`), so the project names the type here rather than importing it.
AssetJob: TypeAlias = Any


def daily_job_name(domain: DomainConfig) -> str:
    return f"{domain.name}_daily"


def review_loop_job_name(domain: DomainConfig) -> str:
    return f"{domain.name}_review_loop"


def training_job_name(domain: DomainConfig) -> str:
    return f"{domain.name}_training"


def _stages(domain: DomainConfig, names: tuple[str, ...]) -> AssetSelection:
    return AssetSelection.assets(*(stage_key(domain, n) for n in names))


def build_jobs(domain: DomainConfig) -> list[AssetJob]:
    """The three jobs of a domain; checks of the selected assets run with them."""
    return [
        define_asset_job(
            daily_job_name(domain),
            selection=_stages(domain, PIPELINE_STAGES),
            description="Ingest, validate, featurise, score, route, export, execute, audit a day.",
        ),
        define_asset_job(
            review_loop_job_name(domain),
            selection=_stages(domain, REVIEW_LOOP_STAGES),
            description="Take returned verdicts in, execute what they decide, update the audit.",
        ),
        define_asset_job(
            training_job_name(domain),
            selection=_stages(domain, (TRAINING_STAGE,)),
            description="Train and register a new model version (champion only if none exists).",
        ),
    ]

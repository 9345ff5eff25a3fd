"""The asset factory: one domain declaration in, that domain's whole asset graph out."""

from __future__ import annotations

from dagster import AssetChecksDefinition, AssetsDefinition

from assets.checks import build_checks
from assets.execution import build_execution_assets
from assets.expectations import build_expectation_checks
from assets.features import build_feature_assets
from assets.ingestion import build_ingestion_assets
from assets.metrics import build_metrics_assets
from assets.model_checks import build_model_checks
from assets.models import build_model_assets
from assets.policy_checks import build_policy_checks
from assets.review import build_review_assets
from assets.routing import build_routing_assets
from hitl_gate.core.domain import DomainConfig

PIPELINE_STAGES = (
    "raw_cases",
    "validated_cases",
    "case_features",
    "risk_scores",
    "routed_decisions",
    "review_batches",
    "reviewer_verdicts",
    "final_decisions",
    "audit_lineage",
    "decision_metrics",
)
REVIEW_LOOP_STAGES = ("reviewer_verdicts", "final_decisions", "audit_lineage", "decision_metrics")
TRAINING_STAGE = "trained_model"


def build_domain_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """Every asset of `domain`, in data order."""
    return [
        *build_ingestion_assets(domain),
        *build_feature_assets(domain),
        *build_model_assets(domain),
        *build_routing_assets(domain),
        *build_review_assets(domain),
        *build_execution_assets(domain),
        *build_metrics_assets(domain),
    ]


def build_domain_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """Every asset check of `domain`."""
    return [
        *build_checks(domain),
        *build_policy_checks(domain),
        *build_model_checks(domain),
        *build_expectation_checks(domain),
    ]

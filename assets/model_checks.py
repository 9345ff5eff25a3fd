"""Blocking checks around scoring: were the inputs complete, and do scores look like training?

Both block: a case scored on imputed medians because a feed broke, or a population the model
was never trained on, must not be routed automatically. Thresholds come from the domain
declaration (`model.monitoring`).
"""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, asset_check

from assets.common import collect_columns, markdown_metadata, rounded, stage_key
from hitl_gate.core.domain import DomainConfig
from models.monitoring import input_completeness, score_drift_by_version
from pipelines.resources import AuditDatabase

DRIFT_COLUMNS = ("model_name", "model_version", "pd")  # what `score_drift_by_version` reads


def build_model_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """Input completeness on `case_features`, score drift (PSI) on `risk_scores`."""
    model = domain.model
    limits = model.monitoring

    @asset_check(
        asset=stage_key(domain, "case_features"),
        blocking=True,
        description=(
            "Every case found its feature row in Feast, and no model feature is missing for more "
            f"than {limits.max_missing_share:.0%} of cases."
        ),
    )
    def inputs_complete(case_features: pl.LazyFrame) -> AssetCheckResult:
        # Only the model's features are read (a scan), never the day's whole wide frame.
        result = input_completeness(
            collect_columns(case_features.lazy(), model.features),
            model.features,
            limits.max_missing_share,
        )
        return AssetCheckResult(
            passed=result.passed,
            metadata={
                "rows": result.rows,
                "cases_without_features": result.cases_without_features,
                "features_over_limit": result.features_over_limit,
                "missing_share": markdown_metadata(
                    pl.DataFrame(
                        {
                            "feature": list(result.missing_share),
                            "missing": list(result.missing_share.values()),
                        }
                    ),
                    max_rows=len(result.missing_share),
                ),
            },
        )

    @asset_check(
        asset=stage_key(domain, "risk_scores"),
        blocking=True,
        description=(
            f"Population stability index of the PDs against the champion's training PDs is at "
            f"most {limits.max_psi} (checked from {limits.min_cases_for_psi} cases on)."
        ),
    )
    def score_drift(risk_scores: pl.LazyFrame, audit_db: AuditDatabase) -> AssetCheckResult:
        # Three columns of the stored scores (a scan): a few bytes per case, not the day's row.
        scores = collect_columns(risk_scores.lazy(), DRIFT_COLUMNS)
        with audit_db.connect(read_only=True) as con:
            drift = score_drift_by_version(con, scores, limits)
        return AssetCheckResult(
            passed=drift.passed,
            metadata=rounded(
                {
                    "psi": drift.worst_psi,
                    "checked": bool(drift.checked),
                    "by_model_version": markdown_metadata(drift.table()),
                }
            ),
        )

    return [inputs_complete, score_drift]

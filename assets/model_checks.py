"""Blocking checks around scoring: were the inputs complete, and do scores look like training?

Both block: a case scored on imputed medians because a feed broke, or a population the model
was never trained on, must not be routed automatically. Thresholds come from the domain
declaration (`model.monitoring`).
"""

import polars as pl
from dagster import AssetCheckResult, AssetChecksDefinition, asset_check

from assets.common import markdown_table, stage_key
from hitl_gate.core.database import query_frame
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import AuditDatabase


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
    def inputs_complete(case_features: pl.DataFrame) -> AssetCheckResult:
        features = model.features
        n = case_features.height
        shares = (
            case_features.select(
                [(pl.col(f).null_count() / pl.len()).alias(f) for f in features]
            ).row(0, named=True)
            if n
            else dict.fromkeys(features, 0.0)
        )
        no_row = case_features.filter(pl.all_horizontal(pl.col(features).is_null())).height
        too_sparse = {f: s for f, s in shares.items() if s > limits.max_missing_share}
        return AssetCheckResult(
            passed=no_row == 0 and not too_sparse,
            metadata={
                "rows": n,
                "cases_without_features": no_row,
                "features_over_limit": sorted(too_sparse),
                "missing_share": markdown_table(
                    pl.DataFrame({"feature": list(shares), "missing": list(shares.values())}),
                    max_rows=len(shares),
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
    def score_drift(risk_scores: pl.DataFrame, audit_db: AuditDatabase) -> AssetCheckResult:
        from models.drift import psi

        results = []
        with audit_db.connect(read_only=True) as con:
            for (name, version), part in risk_scores.group_by(
                ["model_name", "model_version"], maintain_order=True
            ):
                reference = query_frame(
                    con,
                    "SELECT bin, lower_pd, upper_pd, share FROM model_reference_bins "
                    "WHERE model_name = ? AND model_version = ?",
                    [name, version],
                )
                value = psi(part["pd"].to_numpy(), reference) if reference.height else None
                results.append((f"{name} v{version}", part.height, value))
        checked = [r for r in results if r[2] is not None and r[1] >= limits.min_cases_for_psi]
        drifted = [r for r in checked if r[2] > limits.max_psi]
        return AssetCheckResult(
            passed=not drifted,
            metadata={
                "psi": max((r[2] for r in checked), default=0.0),
                "checked": bool(checked),
                "by_model_version": markdown_table(
                    pl.DataFrame(results, schema=["model", "cases", "psi"], orient="row")
                ),
            },
        )

    return [inputs_complete, score_drift]

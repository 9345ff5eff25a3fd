"""Model assets: training on point-in-time features with real outcomes, and champion scoring."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)

from assets.common import (
    markdown_metadata,
    markdown_table,
    readable_number,
    rounded,
    stage_key,
    upstream,
)
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import read_slices, row_count, slice_ranges, write_each
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import (
    AuditDatabase,
    FeatureStoreResource,
    LandingZone,
    ModelRegistryResource,
)


class TrainingConfig(Config):
    """Which model family a training run fits (`logistic_scorecard` or `gradient_boosting`).

    Only a scorecard can become champion; a gradient-boosted version is registered for
    `hitl model promote NAME VERSION --alias challenger --signing-key KEY` (a signed act).
    """

    model_family: str = "logistic_scorecard"


def build_model_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `trained_model` and `risk_scores` assets of one domain."""
    model = domain.model

    @asset(
        key=stage_key(domain, "trained_model"),
        group_name=domain.name,
        deps=[stage_key(domain, "case_features")],
        description=(
            f"Trains `{model.name}` on point-in-time features and observed outcomes "
            f"({model.label.column}), logs it to MLflow and registers it; sets the `champion` "
            "alias only when the model has none."
        ),
        kinds={"mlflow", "scikitlearn", "feast"},
    )
    def trained_model(
        context: AssetExecutionContext,
        config: TrainingConfig,
        feature_store: FeatureStoreResource,
        model_registry: ModelRegistryResource,
        landing: LandingZone,
        audit_db: AuditDatabase,
    ) -> MaterializeResult:
        from models.training_run import run_training

        run = run_training(
            domain,
            feast_dir=feature_store.path,
            landing_root=landing.path,
            mlflow_dir=model_registry.path,
            audit_db=Path(audit_db.database),
            family=config.model_family,
            audit_lock_wait_s=audit_db.lock_wait_s,
        )
        trained = run.trained
        return MaterializeResult(
            metadata={
                "model_name": trained.name,
                "model_version": trained.version,
                "model_family": trained.family,
                "mlflow_run_id": trained.run_id,
                "feature_service": run.feature_service,
                "promoted_to_champion": trained.promoted_to_champion,
                "leakage_check": trained.leakage.describe() if trained.leakage else "not run",
                "training_rows": run.training_rows,
                "positive_rate": readable_number(run.positive_rate),
                "metrics": MetadataValue.md(
                    markdown_table(
                        pl.DataFrame(
                            {
                                "metric": list(trained.metrics),
                                "value": list(trained.metrics.values()),
                            }
                        ),
                        max_rows=50,
                    )
                ),
            }
        )

    @daily_stage_asset(
        domain,
        stage_key(domain, "risk_scores"),
        ins={"case_features": upstream(domain, "case_features")},
        deps=[stage_key(domain, "trained_model")],
        description=(
            f"Probability of {model.label.column} outcome, points score, risk band and up to four "
            f"adverse reason codes from `models:/{model.name}@champion`; each row records the "
            "resolved model version, run id and artefact digest (never just the alias)."
        ),
        kinds={"mlflow"},
    )
    def risk_scores(
        context: AssetExecutionContext,
        case_features: pl.LazyFrame,
        model_registry: ModelRegistryResource,
        audit_db: AuditDatabase,
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output:
        from models.alias_audit import UnreviewedAliasMove, require_reviewed_aliases
        from models.champion_scoring import (
            DayScoring,
            StaleFeatureService,
            check_feature_services,
            load_scorers,
            record_scoring,
        )

        scorers = load_scorers(model.name, model_registry.path)
        champion = scorers.champion
        used = case_features.select(pl.col("feature_service").unique()).collect()
        try:
            with audit_db.connect() as con:
                require_reviewed_aliases(con, model.name, scorers.resolved())
            check_feature_services(used["feature_service"].to_list(), domain, champion)
        except (UnreviewedAliasMove, StaleFeatureService) as exc:
            raise Failure(description=str(exc)) from exc
        scoring = DayScoring(scorers, domain, context.run.run_id, scored_at=datetime.now(UTC))
        # Scored in slices of `slice_rows` cases (scoring is per case); see assets.slices.
        ranges = slice_ranges(row_count(case_features), io_manager.slice_rows)
        with output_sink(io_manager, context, context.asset_key, len(ranges) > 1) as sink:
            write_each(
                read_slices(case_features, case_features.collect_schema().names(), ranges),
                scoring.score,
                sink,
            )
            output = sink.result()
        with audit_db.connect() as con:
            record_scoring(con, domain.name, partition_days(context), champion, scoring.shadow())
        return Output(
            output,
            metadata=rounded(
                {
                    "rows": scoring.rows,
                    "slices": len(ranges),
                    "model": f"{champion.name} v{champion.version}",
                    "mlflow_run_id": champion.run_id,
                    "mean_pd": scoring.mean_pd,
                    "mean_pd_calibrated": scoring.mean_pd_calibrated,
                    "risk_bands": markdown_metadata(scoring.band_counts()),
                    **scoring.challenger_summary(),
                }
            ),
        )

    return [trained_model, risk_scores]

"""Model assets: training on point-in-time features with real outcomes, and champion scoring."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink, read_slices, row_count, slice_ranges
from hitl_gate.core.database import insert_new_rows, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from models.outcomes import read_outcomes
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
    `hitl model promote NAME VERSION --alias challenger --by WHO`.
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
        from features.services import ensure_model_service
        from features.store import feature_source_dir, historical_features, stored_entities
        from models.mlflow_store import configure
        from models.registry import (
            AUTO_FIRST_CHAMPION,
            CHAMPION,
            Promotion,
            record_promotion,
            version_ref,
        )
        from models.training import train_and_register

        outcomes = read_outcomes(landing.path, domain)
        sources = sorted(feature_source_dir(domain, feature_store.path).glob("*.parquet"))
        if not sources or outcomes.height == 0:
            raise ValueError(
                f"{domain.name}: training needs materialised case_features and outcome files "
                f"under {landing.path / domain.outcomes_subdir}"
            )
        entities = stored_entities(domain, feature_store.path).join(
            outcomes, on=domain.case_id, how="inner"
        )
        store = feature_store.open(domain)
        training = historical_features(store, domain, entities.drop(model.label.column)).join(
            outcomes, on=domain.case_id, how="left"
        )
        training = training.with_columns(
            pl.col(model.label.column)
            .is_in(model.label.positive_values)
            .cast(pl.Int8)
            .alias("label")
        )
        trained = train_and_register(
            training, model, domain.case_id, model_registry.path, family=config.model_family
        )
        # Every registered version gets its feature service now, whether or not it is promoted.
        service = ensure_model_service(
            store,
            domain,
            version_ref(configure(model_registry.path), trained.name, trained.version),
        )
        if trained.promoted_to_champion:
            record_promotion(
                Path(audit_db.database),
                Promotion(
                    model_name=trained.name,
                    alias=CHAMPION,
                    from_version=None,
                    to_version=trained.version,
                    promoted_by=AUTO_FIRST_CHAMPION,
                    reason="first version of the model: no champion existed",
                    promoted_at=datetime.now(UTC),
                ),
            )
        return MaterializeResult(
            metadata={
                "model_name": trained.name,
                "model_version": trained.version,
                "model_family": trained.family,
                "mlflow_run_id": trained.run_id,
                "feature_service": service,
                "promoted_to_champion": trained.promoted_to_champion,
                "training_rows": training.height,
                "positive_rate": float(training["label"].mean() or 0.0),
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
        from features.services import foreign_services
        from models.registry import CHALLENGER
        from models.scoring import alias_is_set, load_champion, score_frame

        champion = load_champion(model.name, model_registry.path)
        foreign = foreign_services(
            case_features.select(pl.col("feature_service").unique())
            .collect()["feature_service"]
            .to_list(),
            domain,
            champion.name,
            champion.version,
        )
        if foreign:
            raise Failure(
                description=(
                    f"features were served by {foreign}, not by the feature service of "
                    f"{champion.name} v{champion.version}: the champion moved after "
                    "case_features ran; re-run the partition"
                )
            )
        challenger = None
        if alias_is_set(model.name, model_registry.path, CHALLENGER):
            challenger = load_champion(model.name, model_registry.path, alias=CHALLENGER)
        now = datetime.now(UTC)
        # Scored in slices of `slice_rows` cases (scoring is per case); see assets.slices.
        ranges = slice_ranges(row_count(case_features), io_manager.slice_rows)
        summary = _ScoreSummary()
        shadows = []
        with output_sink(io_manager, context, context.asset_key, len(ranges) > 1) as sink:
            for features in read_slices(
                case_features, case_features.collect_schema().names(), ranges
            ):
                scores = score_frame(champion, features, model, domain.case_id).with_columns(
                    features["partition_date"]
                )
                if challenger is not None:
                    shadows.append(_shadow_rows(context, challenger, scores, features, now))
                summary.add(scores)
                sink.write(scores)
            output = sink.result()
        shadow_meta: dict[str, object] = {"challenger": "none"}
        shadow = None
        if challenger is not None:
            from models.scoring import compare_shadow

            shadow = pl.concat(shadows, how="vertical")
            shadow_meta = {
                "challenger": f"{challenger.name} v{challenger.version} ({challenger.family})",
                **{f"shadow_{k}": v for k, v in compare_shadow(shadow).items()},
            }
        with audit_db.connect() as con:
            if champion.reference_bins:
                insert_new_rows(
                    con,
                    "model_reference_bins",
                    pl.DataFrame(list(champion.reference_bins)).with_columns(
                        pl.lit(champion.name).alias("model_name"),
                        pl.lit(champion.version).alias("model_version"),
                    ),
                )
            # Replaced even without a challenger, so a rerun never leaves stale shadow rows.
            replace_partition_slice(
                con,
                "shadow_scores",
                shadow if shadow is not None else pl.DataFrame(),
                domain.name,
                partition_days(context),
            )
            insert_new_rows(
                con,
                "model_versions",
                pl.DataFrame(
                    {
                        "model_name": [champion.name],
                        "model_version": [champion.version],
                        "model_run_id": [champion.run_id],
                        "artifact_digest": [champion.artifact_digest],
                        "first_used_at": [datetime.now(UTC)],
                    }
                ),
            )
        return Output(
            output,
            metadata={
                "rows": summary.rows,
                "slices": len(ranges),
                "model": f"{champion.name} v{champion.version}",
                "mlflow_run_id": champion.run_id,
                **summary.metadata(),
                **shadow_meta,
            },
        )

    def _shadow_rows(
        context: AssetExecutionContext,
        challenger: Any,
        scores: pl.DataFrame,
        case_features: pl.DataFrame,
        scored_at: datetime,
    ) -> pl.DataFrame:
        """Score the challenger in shadow: audit rows for the cases of `scores`, never routed."""
        from models.scoring import shadow_frame

        shadow = shadow_frame(challenger, scores, case_features, model, domain.case_id)
        return shadow.join(
            scores.select(domain.case_id, "partition_date"), on=domain.case_id
        ).select(
            pl.lit(domain.name).alias("domain"),
            pl.col(domain.case_id).alias("case_id"),
            pl.exclude(domain.case_id),
            pl.lit(context.run_id).alias("run_id"),
            pl.lit(scored_at).alias("scored_at"),
        )

    return [trained_model, risk_scores]


class _ScoreSummary:
    """The day's score metadata, added up slice by slice: rows, mean PDs, risk band counts."""

    def __init__(self) -> None:
        self.rows = 0
        self.pd_sum = 0.0
        self.calibrated_sum = 0.0
        self.bands: list[pl.DataFrame] = []

    def add(self, scores: pl.DataFrame) -> None:
        self.rows += scores.height
        self.pd_sum += float(scores["pd"].sum() or 0.0)
        self.calibrated_sum += float(scores["pd_calibrated"].sum() or 0.0)
        self.bands.append(scores.group_by("risk_band").len())

    def metadata(self) -> dict[str, object]:
        bands = (
            pl.concat(self.bands).group_by("risk_band").agg(pl.col("len").sum()).sort("risk_band")
        )
        return {
            "mean_pd": self.pd_sum / self.rows if self.rows else 0.0,
            "mean_pd_calibrated": self.calibrated_sum / self.rows if self.rows else 0.0,
            "risk_bands": markdown_table(bands),
        }

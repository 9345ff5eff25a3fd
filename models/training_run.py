"""One training run of a domain's model: point-in-time features, observed outcomes, registry.

The `trained_model` asset calls `run_training`; everything it needs arrives as plain paths, the
open Feast store and the outcome frame, so the run is the same from the CLI, a test or Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import polars as pl

from hitl_gate.core.domain import DomainConfig, ModelConfig
from hitl_gate.core.settings import DEFAULT_LOCK_WAIT_SECONDS
from models.outcomes import bad_outcome, read_outcomes
from models.registry import AUTO_FIRST_CHAMPION, CHAMPION, Promotion
from models.training import TrainedModel

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class TrainingRun:
    """The registered version, the feature service made for it and the rows it learnt from."""

    trained: TrainedModel
    feature_service: str
    training_rows: int
    positive_rate: float


def with_label(training: pl.DataFrame, domain: DomainConfig) -> pl.DataFrame:
    """Add the 0/1 `label` the model learns: 1 where the outcome is a declared bad value."""
    return training.with_columns(bad_outcome(domain).cast(pl.Int8).alias("label"))


def positive_rate(training: pl.DataFrame) -> float:
    """The share of bad outcomes among the training rows (0 when there are none)."""
    mean = training["label"].cast(pl.Float64).mean()
    return float(cast(float, mean)) if mean is not None else 0.0


def first_champion_promotion(trained: TrainedModel, now: datetime) -> Promotion:
    """The audit record of a first version becoming champion because none existed."""
    return Promotion(
        model_name=trained.name,
        alias=CHAMPION,
        from_version=None,
        to_version=trained.version,
        promoted_by=AUTO_FIRST_CHAMPION,
        reason="first version of the model: no champion existed",
        promoted_at=now,
    )


def training_frame(
    domain: DomainConfig, feast_dir: Path, landing_root: Path
) -> tuple[FeatureStore, pl.DataFrame]:
    """The opened feature store, and the point-in-time features of every stored case with an
    outcome, with its `label`.

    Raises ValueError (before the store is opened) when no features were materialised or no
    outcome is known: a model trained on nothing must not be registered.
    """
    from features.store import (
        feature_source_dir,
        historical_features,
        open_feature_store,
        stored_entities,
    )

    model: ModelConfig = domain.model
    outcomes = read_outcomes(landing_root, domain)
    sources = sorted(feature_source_dir(domain, feast_dir).glob("*.parquet"))
    if not sources or outcomes.height == 0:
        raise ValueError(
            f"{domain.name}: training needs materialised case_features and outcome files "
            f"under {landing_root / domain.outcomes_subdir}"
        )
    entities = stored_entities(domain, feast_dir).join(outcomes, on=domain.case_id, how="inner")
    store = open_feature_store(domain, feast_dir)
    training = historical_features(store, domain, entities.drop(model.label.column)).join(
        outcomes, on=domain.case_id, how="left"
    )
    return store, with_label(training, domain)


def run_training(
    domain: DomainConfig,
    *,
    feast_dir: Path,
    landing_root: Path,
    mlflow_dir: Path,
    audit_db: Path,
    family: str,
    audit_lock_wait_s: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> TrainingRun:
    """Train, register, give the new version its feature service, record a first champion
    (waiting up to `audit_lock_wait_s` for the audit file another process holds).

    Every registered version gets its feature service now, whether or not it is promoted.
    """
    from features.services import ensure_model_service
    from models.mlflow_store import configure, domain_experiment
    from models.registry import record_promotion, version_ref
    from models.training import train_and_register

    store, training = training_frame(domain, feast_dir, landing_root)
    experiment = domain_experiment(domain.name, domain.description, domain.model.name)
    trained = train_and_register(
        training, domain.model, domain.case_id, mlflow_dir, family=family, experiment=experiment
    )
    service = ensure_model_service(
        store, domain, version_ref(configure(mlflow_dir), trained.name, trained.version)
    )
    if trained.promoted_to_champion:
        promotion = first_champion_promotion(trained, datetime.now(UTC))
        record_promotion(audit_db, promotion, audit_lock_wait_s)
    return TrainingRun(trained, service, training.height, positive_rate(training))

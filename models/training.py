"""Train a model on a time split, log the evidence and register a new model version.

Two families: the sign-constrained logistic scorecard (champion-eligible: exact reason codes)
and gradient-boosted trees (challenger only). A new scorecard version becomes champion only
when the registered model has none yet and it passes the leakage gate (models/leakage.py: no
implausibly high validation AUC, no single feature that alone nearly predicts the outcome):
replacing a live champion, or trusting a too-good model, is a decision for a person
(`hitl model promote`, `models.registry.promote`), not a side effect of training.

Each version carries, in its MLmodel metadata (so the artefact digest covers them), its family,
the Platt calibration fitted on the validation window and the training PD distribution that
score drift (PSI) is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.core.domain import ModelConfig
from models.calibration import fit_platt
from models.drift import reference_bins
from models.evaluation import calibration_table, discrimination
from models.leakage import LEAKAGE_TAG, LeakageCheck, check_leakage
from models.mlflow_store import ExperimentSpec, configure, domain_experiment, experiment_id
from models.model_card import render_challenger_card, render_model_card
from models.registry import CHAMPION_FAMILIES, FAMILY_TAG, GRADIENT_BOOSTING, SCORECARD
from models.scorecard import (
    CLASS_WEIGHT,
    REGULARISATION_C,
    feature_frame,
    fit_sign_constrained,
    model_features,
)

EVENT_TIMESTAMP = "event_timestamp"
LABEL = "label"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"
# Rows kept as the logged input example: enough to document the schema, cheap to validate.
INPUT_EXAMPLE_ROWS = 5
# skops (MLflow's default, safe format) refuses unlisted types on load. SimpleImputer keeps
# its fitted `numpy.dtype`, a plain data-type descriptor that executes nothing when loaded.
SKOPS_TRUSTED_TYPES = ["numpy.dtype"]
# Tree nodes index arrays without bounds checks, so skops asks for explicit trust. We wrote
# the file ourselves, and scoring checks the artefact digest recorded on every decision.
TREE_TRUSTED_TYPES = [
    *SKOPS_TRUSTED_TYPES,
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]
FAMILIES = (SCORECARD, GRADIENT_BOOSTING)


@dataclass(frozen=True)
class TrainedModel:
    """The registered version a training run produced."""

    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    promoted_to_champion: bool
    family: str = SCORECARD
    leakage: LeakageCheck | None = None


def split_by_time(training: pl.DataFrame, model_cfg: ModelConfig) -> tuple[pl.DataFrame, ...]:
    """(train, validation): events before `validation_from` train, the rest validate.

    A time split, not a random one, because the model will score cases from after its
    training window; a random split would flatter it with look-alike neighbours.
    """
    before = pl.col(EVENT_TIMESTAMP).cast(pl.Date) < model_cfg.validation_from
    train = training.filter(before)
    validation = training.filter(~before)
    if train.height == 0 or validation.height == 0:
        raise ValueError(
            f"time split at {model_cfg.validation_from} leaves {train.height} training and "
            f"{validation.height} validation rows; both must be non-empty"
        )
    return train, validation


def _labels(frame: pl.DataFrame) -> np.ndarray:
    if frame[LABEL].null_count():
        raise ValueError("the label column has nulls: pass only cases whose outcome is known")
    return frame[LABEL].cast(pl.Int8).to_numpy()


def _check_columns(training: pl.DataFrame, model_cfg: ModelConfig, case_id: str) -> None:
    required = [case_id, EVENT_TIMESTAMP, LABEL, *model_cfg.features]
    missing = [c for c in required if c not in training.columns]
    if missing:
        raise KeyError(f"training frame lacks columns: {missing}")


def _fit(family: str, train: pl.DataFrame, y: np.ndarray, model_cfg: ModelConfig):
    """(fitted model, features kept, features dropped, family params) for `family`."""
    directions = {
        name: 1 if code.risk_direction == "higher" else -1
        for name, code in model_cfg.reason_codes.items()
    }
    X = train.select(model_cfg.features)
    if family == SCORECARD:
        pipeline, dropped = fit_sign_constrained(X, y, directions)
        params = {"C": REGULARISATION_C, "class_weight": str(CLASS_WEIGHT)}
        return pipeline, model_features(pipeline), dropped, params
    from models import challenger

    model = challenger.fit_gradient_boosting(X, y, directions)
    params = {
        "max_iter": challenger.MAX_ITER,
        "learning_rate": challenger.LEARNING_RATE,
        "max_leaf_nodes": challenger.MAX_LEAF_NODES,
    }
    return model, list(model_cfg.features), [], params


def train_and_register(
    training: pl.DataFrame,
    model_cfg: ModelConfig,
    case_id: str,
    mlflow_dir: Path,
    family: str = SCORECARD,
    experiment: ExperimentSpec | None = None,
) -> TrainedModel:
    """Fit on the time split, log params, metrics, calibration and model card, and register.

    `training` has `case_id`, `event_timestamp`, the model features and a boolean or 0/1
    `label`. The model is logged with explicit pip requirements (inferring them costs about
    9 s in a subprocess) and with `predict_proba` as the pyfunc method, so the registry serves
    probabilities.
    """
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, not {family!r}")
    _check_columns(training, model_cfg, case_id)
    train, validation = split_by_time(training, model_cfg)
    y_train, y_val = _labels(train), _labels(validation)
    pipeline, kept, dropped, family_params = _fit(family, train, y_train, model_cfg)

    x_train = feature_frame(train, kept)
    x_val = feature_frame(validation, kept)
    pd_train = pipeline.predict_proba(x_train)[:, 1]
    pd_val = pipeline.predict_proba(x_val)[:, 1]
    metrics: dict[str, float] = {}
    for split, y, pd_ in (("train", y_train, pd_train), ("validation", y_val, pd_val)):
        metrics.update({f"{split}_{k}": v for k, v in discrimination(y, pd_).items()})
    calibration = pl.concat(
        [
            calibration_table("train", y_train, pd_train),
            calibration_table("validation", y_val, pd_val),
        ]
    )
    platt = fit_platt(y_val, pd_val)
    reference = reference_bins(pd_train)
    metrics.update(
        {
            f"validation_calibrated_{k}": v
            for k, v in discrimination(y_val, platt.apply(pd_val)).items()
        }
    )
    leakage = check_leakage(
        training,
        model_cfg.features,
        _labels(training),
        metrics["validation_auc"],
        model_cfg.leakage,
    )
    params: dict[str, str | int | float] = {
        "model_family": family,
        **family_params,
        "platt_slope": platt.slope,
        "platt_intercept": platt.intercept,
        "features": ",".join(kept),
        "dropped_for_sign": ",".join(dropped) or "none",
        "label_column": model_cfg.label.column,
        "validation_from": model_cfg.validation_from.isoformat(),
        "case_id": case_id,
        "n_train": train.height,
        "n_validation": validation.height,
        "train_bad_rate": float(y_train.mean()),
        "validation_bad_rate": float(y_val.mean()),
        "train_from": str(train[EVENT_TIMESTAMP].min()),
        "validation_to": str(validation[EVENT_TIMESTAMP].max()),
        **leakage.params(),
    }

    # Imported only now, so a bad frame or split fails before paying about 5 s for mlflow.
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = x_train.head(INPUT_EXAMPLE_ROWS)
    signature = infer_signature(example, pipeline.predict_proba(example))
    client = configure(mlflow_dir)
    # Without a domain's experiment (tests, benchmarks), one named after the model.
    spec = experiment or domain_experiment(
        model_cfg.name, model_cfg.label.description, model_cfg.name
    )
    with mlflow.start_run(
        experiment_id=experiment_id(client, mlflow_dir, spec), run_name=f"train-{model_cfg.name}"
    ) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"auc_alone_{n}": v for n, v in leakage.feature_aucs.items()})
        mlflow.log_text(calibration.write_csv(), "calibration.csv")
        mlflow.log_text(reference.write_csv(), "reference_bins.csv")
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            registered_model_name=model_cfg.name,
            signature=signature,
            input_example=example,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES if family == SCORECARD else TREE_TRUSTED_TYPES,
            metadata={
                FAMILY_TAG: family,
                "calibration": platt.as_dict(),
                "reference_bins": reference.to_dicts(),
            },
        )
        version = str(info.registered_model_version)
        if family == SCORECARD:
            card = render_model_card(model_cfg, pipeline, version, run.info.run_id, params, metrics)
        else:
            card = render_challenger_card(
                model_cfg, kept, version, run.info.run_id, params, metrics
            )
        card = card + "\n".join(["", *leakage.card_lines()])
        mlflow.log_text(card, "model_card.md")
    # What the registry pages show: the model's purpose, and each version's own card.
    client.update_registered_model(model_cfg.name, description=spec.model_description)
    client.update_model_version(model_cfg.name, version, description=card)
    client.set_model_version_tag(model_cfg.name, version, FAMILY_TAG, family)
    client.set_model_version_tag(model_cfg.name, version, LEAKAGE_TAG, leakage.tag())

    # Check-then-set is not atomic; training runs for one model are serialised by the
    # orchestrator, and the worst case of a race is two versions each believing they won.
    promoted = (
        family in CHAMPION_FAMILIES
        and leakage.passed
        and CHAMPION not in client.get_registered_model(model_cfg.name).aliases
    )
    if promoted:
        client.set_registered_model_alias(model_cfg.name, CHAMPION, version)
    return TrainedModel(
        name=model_cfg.name,
        version=version,
        run_id=run.info.run_id,
        metrics=metrics,
        promoted_to_champion=promoted,
        family=family,
        leakage=leakage,
    )

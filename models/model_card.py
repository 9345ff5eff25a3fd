"""The model card stored with each registered version, so a reviewer or auditor can read what
the model is, what it was trained on and how it performed without opening a notebook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hitl_gate.core.domain import ModelConfig
from models.scorecard import CLASS_WEIGHT, REGULARISATION_C, model_features

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def render_model_card(
    model_cfg: ModelConfig,
    pipeline: Pipeline,
    version: str,
    run_id: str,
    params: Mapping[str, str | int | float],
    metrics: Mapping[str, float],
) -> str:
    """Markdown: purpose, data window, metrics, and each feature's coefficient and reason code."""
    impute = pipeline.named_steps["impute"]
    scale = pipeline.named_steps["scale"]
    coef = pipeline.named_steps["logit"].coef_[0]
    lines = [
        f"# Model card: {model_cfg.name} v{version}",
        "",
        f"- Run: `{run_id}`",
        "- Family: additive logistic scorecard (median imputation, standardisation, "
        f"logistic regression, C={REGULARISATION_C}, class_weight={CLASS_WEIGHT})",
        f"- Label: {model_cfg.label.column} in {model_cfg.label.positive_values}. "
        f"{model_cfg.label.description.strip()}",
        f"- Split: event time before {model_cfg.validation_from} trains, from it validates "
        f"({params['n_train']} / {params['n_validation']} cases, bad rate "
        f"{_fmt(float(params['train_bad_rate']))} / {_fmt(float(params['validation_bad_rate']))})",
        "- Output: PD of the bad class; reason codes are the features with the largest positive "
        "contribution to the logit relative to the average training case (exact, additive).",
        "",
        "## Metrics",
        "",
        "| metric | train | validation |",
        "|---|---|---|",
    ]
    for name in ("auc", "ks", "brier"):
        lines.append(
            f"| {name} | {_fmt(metrics[f'train_{name}'])} | {_fmt(metrics[f'validation_{name}'])} |"
        )
    lines += [
        "",
        "## Features",
        "",
        "| feature | coefficient (per SD) | training median | mean | SD | reason code |",
        "|---|---|---|---|---|---|",
    ]
    for j, name in enumerate(model_features(pipeline)):
        reason = model_cfg.reason_codes.get(name)
        code = f"{reason.code}: {reason.text}" if reason else "(none)"
        lines.append(
            f"| {name} | {coef[j]:+.4f} | {impute.statistics_[j]:.4g} | {scale.mean_[j]:.4g} "
            f"| {scale.scale_[j]:.4g} | {code} |"
        )
    lines += [
        "",
        "## Limitations",
        "",
        "- Linear in each standardised feature: no interactions, no non-monotone effects.",
        "- Trained on the outcomes available at training time; a young book under-states "
        "eventual default, so PDs are for ranking and routing, not for provisioning.",
        "",
    ]
    return "\n".join(lines)


def render_challenger_card(
    model_cfg: ModelConfig,
    features: list[str],
    version: str,
    run_id: str,
    params: Mapping[str, str | int | float],
    metrics: Mapping[str, float],
) -> str:
    """Markdown card of a gradient-boosted challenger: what it is and why it cannot be champion."""
    lines = [
        f"# Model card: {model_cfg.name} v{version} (challenger)",
        "",
        f"- Run: `{run_id}`",
        "- Family: gradient-boosted trees (scikit-learn HistGradientBoosting), monotone in each "
        "feature's declared risk direction.",
        f"- Features: {', '.join(features)}",
        f"- Split: event time before {model_cfg.validation_from} trains, from it validates "
        f"({params['n_train']} / {params['n_validation']} cases).",
        "- Role: scored in shadow next to the champion and compared; never acted on. It has no "
        "exact additive reason codes, so governance refuses it as champion.",
        "",
        "| metric | train | validation |",
        "|---|---|---|",
    ]
    for name in ("auc", "ks", "brier"):
        lines.append(
            f"| {name} | {_fmt(metrics[f'train_{name}'])} | {_fmt(metrics[f'validation_{name}'])} |"
        )
    return "\n".join([*lines, ""])

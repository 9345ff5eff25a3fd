"""The rules of the blocking checks around scoring: complete inputs, scores like training.

A case scored on imputed medians because a feed broke, or a population the model was never
trained on, must not be routed automatically. Thresholds come from the domain declaration
(`model.monitoring`); the Dagster checks in `assets/model_checks.py` only report these results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame
from hitl_gate.core.domain import MonitoringConfig
from models.drift import psi


@dataclass(frozen=True)
class InputCompleteness:
    """How complete a day's model features were."""

    rows: int
    missing_share: dict[str, float]  # feature -> share of cases without a value
    cases_without_features: int  # cases with no model feature at all (no Feast row)
    features_over_limit: list[str]

    @property
    def passed(self) -> bool:
        return self.cases_without_features == 0 and not self.features_over_limit


def input_completeness(
    case_features: pl.DataFrame, features: Sequence[str], max_missing_share: float
) -> InputCompleteness:
    """Every case found its feature row, and no feature is missing above `max_missing_share`."""
    features = list(features)
    n = case_features.height
    shares = (
        case_features.select([(pl.col(f).null_count() / pl.len()).alias(f) for f in features]).row(
            0, named=True
        )
        if n
        else dict.fromkeys(features, 0.0)
    )
    no_row = case_features.filter(pl.all_horizontal(pl.col(features).is_null())).height
    too_sparse = sorted(f for f, s in shares.items() if s > max_missing_share)
    return InputCompleteness(n, shares, no_row, too_sparse)


@dataclass(frozen=True)
class VersionDrift:
    """The PSI of one model version's scores against its training reference bins."""

    model: str  # "<name> v<version>"
    cases: int
    psi: float | None  # None when the version has no reference bins


@dataclass(frozen=True)
class ScoreDrift:
    """Score drift of every model version that scored the day, judged against the limits."""

    versions: list[VersionDrift]
    checked: list[VersionDrift]  # versions with reference bins and enough cases
    drifted: list[VersionDrift]

    @property
    def passed(self) -> bool:
        return not self.drifted

    @property
    def worst_psi(self) -> float:
        return max((v.psi for v in self.checked if v.psi is not None), default=0.0)

    def table(self) -> pl.DataFrame:
        """One row per model version: model, cases, psi."""
        return pl.DataFrame(
            [(v.model, v.cases, v.psi) for v in self.versions],
            schema=["model", "cases", "psi"],
            orient="row",
        )


def judge_score_drift(versions: list[VersionDrift], limits: MonitoringConfig) -> ScoreDrift:
    """Versions with at least `min_cases_for_psi` cases are checked; above `max_psi` drifted.

    PSI over a handful of cases is noise, so small days are reported but never block.
    """
    checked = [v for v in versions if v.psi is not None and v.cases >= limits.min_cases_for_psi]
    drifted = [v for v in checked if v.psi is not None and v.psi > limits.max_psi]
    return ScoreDrift(versions, checked, drifted)


def score_drift_by_version(
    con: duckdb.DuckDBPyConnection, risk_scores: pl.DataFrame, limits: MonitoringConfig
) -> ScoreDrift:
    """PSI of each model version's PDs against its reference bins in `model_reference_bins`."""
    versions = []
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
        versions.append(VersionDrift(f"{name} v{version}", part.height, value))
    return judge_score_drift(versions, limits)

"""The model's reasoning for one case: each input's exact contribution to the logit.

The champion is an additive scorecard, so its log-odds split exactly into one term per input
relative to the average training case (`models.scorecard.contributions_from_matrix`); the
reason codes are the largest positive terms. The case page shows every term, computed from the
case's stored features and the model version its decision names (loaded once per process).

A term reveals its input (a monotone function of it), so the term of an input masked for the
viewer's role (the batch manifest's `masking`) is hidden exactly as the input is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.domain import DomainConfig
from models.scorecard import contributions_from_matrix, feature_matrix
from models.scoring import ChampionModel, load_model_version


@dataclass(frozen=True)
class Contribution:
    """One input's term: its stored value and its contribution to the logit (None: hidden)."""

    feature: str
    value: str
    logit: float | None

    @property
    def direction(self) -> str:
        """How the term moves the PD, in words a reviewer reads at a glance."""
        if self.logit is None:
            return "hidden for your role"
        if abs(self.logit) < 0.005:
            return "no effect"
        return "raises the risk" if self.logit > 0 else "lowers the risk"


@dataclass
class ContributionSource:
    """Loads each model version once per process; computes one case's terms on demand."""

    warehouse: Path
    mlflow_dir: Path
    # How a numbered version is loaded: from the MLflow registry (a test may hand a fitted one).
    loader: Callable[[str, Path, str], ChampionModel] = load_model_version
    _models: dict[tuple[str, str], ChampionModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self, name: str, version: str) -> ChampionModel:
        with self._lock:
            key = (name, version)
            if key not in self._models:
                self._models[key] = self.loader(name, self.mlflow_dir, version)
            return self._models[key]

    def of_case(
        self,
        domain: DomainConfig,
        case_id: str,
        day: date,
        model_version: str,
        masked: set[str],
    ) -> list[Contribution]:
        """Every input's term for the case, largest effect first; [] when the case's stored
        features are gone (retention) or the case is not among them."""
        stored = self.warehouse / domain.name / "case_features" / f"{day.isoformat()}.parquet"
        if not stored.is_file() or not model_version:
            return []
        row = pl.scan_parquet(stored).filter(pl.col(domain.case_id) == case_id).collect()
        if row.height != 1:
            return []
        model = self.model(domain.model.name, model_version)
        names = model.features
        terms, _ = contributions_from_matrix(model.pipeline, feature_matrix(row, names))
        found = [
            Contribution(
                feature=name,
                value="hidden for your role" if name in masked else _shown(row, name),
                logit=None if name in masked else round(float(terms[0, i]), 3),
            )
            for i, name in enumerate(names)
        ]
        return sorted(found, key=lambda c: -abs(c.logit) if c.logit is not None else 0.0)


def _shown(row: pl.DataFrame, name: str) -> str:
    value = row[name][0] if name in row.columns else None
    if value is None:
        return "missing"
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""Platt calibration of a model's PD on the validation window, kept outside the model itself.

The model's own probability is fitted on older cases; the validation month is the closest to
the cases being scored, so a two-parameter logistic map of the model's logit, fitted there,
corrects level and spread without changing the ranking. Because the map is affine in the logit
(`a * logit + b`), the scorecard's exact decomposition carries over: calibrated logit =
`a * base + b + sum(a * c_j)`, so reason codes (ranked on `c_j`, a > 0) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# PDs are clipped before the logit so a saturated probability stays finite.
EPSILON = 1e-12
# Almost no shrinkage: two parameters on thousands of cases need none, and shrinking the
# slope towards 0 would pull every calibrated PD towards the base rate.
PLATT_C = 1e6


@dataclass(frozen=True)
class PlattCalibration:
    """calibrated PD = sigmoid(slope * logit(pd) + intercept); identity is (1, 0)."""

    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, pd_: np.ndarray) -> np.ndarray:
        """Calibrated PDs for model PDs, vectorised."""
        z = self.slope * logit(pd_) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def as_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "intercept": self.intercept}


def logit(pd_: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(pd_, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(p / (1.0 - p))


def fit_platt(y: np.ndarray, pd_: np.ndarray) -> PlattCalibration:
    """Fit the map on (label, model PD) pairs; identity when one class is missing.

    A slope that is not positive would reverse the ranking the model was validated on, so it
    falls back to identity rather than produce PDs that contradict the reason codes.
    """
    from sklearn.linear_model import LogisticRegression

    target = np.asarray(y).astype(np.int8)
    if len(np.unique(target)) < 2:
        return PlattCalibration()
    fit = LogisticRegression(C=PLATT_C, max_iter=1000).fit(logit(pd_).reshape(-1, 1), target)
    slope = float(fit.coef_[0][0])
    if slope <= 0:
        return PlattCalibration()
    return PlattCalibration(slope=slope, intercept=float(fit.intercept_[0]))

"""The champion model family: an additive logistic scorecard with exact reason codes.

Median imputation -> standardisation -> logistic regression. The model is linear in the
standardised features, so each case's logit splits exactly into one term per feature plus a
base logit. That makes adverse-action reason codes exact and cheap (a few numpy operations),
where tree models need TreeSHAP at about 2,700 rows/s (docs/scaling.md).

`class_weight` is left unset on purpose: the predicted probability is used as a PD against
absolute band thresholds (1 %, 2 %, ...), and re-weighting the classes would inflate every PD
towards 50 % while barely changing the ranking. `C = 0.1` is moderate shrinkage on standardised
features: bad outcomes are rare (about 2 %), so a weakly regularised fit chases the few hundred
positives, and a heavy one flattens coefficients that the reason codes depend on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

REGULARISATION_C = 0.1
CLASS_WEIGHT: str | None = None
MAX_ITER = 1000


def feature_matrix(X: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The features as a float64 matrix in the given order; nulls and non-finite values -> NaN.

    Infinite ratios (a zero denominator upstream) are treated as missing so the median
    imputer handles them, instead of an infinite logit.
    """
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise KeyError(f"feature columns missing from the frame: {missing}")
    exprs = []
    for name in features:
        col = pl.col(name).cast(pl.Float64)
        exprs.append(pl.when(col.is_finite()).then(col).otherwise(None).alias(name))
    return X.select(exprs).to_numpy().astype(np.float64, copy=False)


def feature_frame(X: pl.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The same matrix as a named pandas frame: the pyfunc column signature needs names."""
    import pandas as pd

    return pd.DataFrame(feature_matrix(X, features), columns=list(features), copy=False)


def fit_scorecard(X: pl.DataFrame, y: np.ndarray) -> Pipeline:
    """Fit the scorecard on every column of `X` (the model features) and a 0/1 target `y`."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    target = np.asarray(y).astype(np.int8)
    if set(np.unique(target)) != {0, 1}:
        raise ValueError("the target needs both classes (0 and 1) to fit a scorecard")
    pipeline = Pipeline(
        [
            # keep_empty_features: an all-null feature must keep its slot, or the
            # coefficients would no longer line up with the feature list.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            (
                "logit",
                LogisticRegression(
                    C=REGULARISATION_C, class_weight=CLASS_WEIGHT, max_iter=MAX_ITER
                ),
            ),
        ]
    )
    pipeline.fit(feature_frame(X, X.columns), target)
    return pipeline


def fit_sign_constrained(
    X: pl.DataFrame, y: np.ndarray, directions: Mapping[str, int]
) -> tuple[Pipeline, list[str]]:
    """Fit, then drop features whose effect contradicts their declared risk direction; refit.

    A reason code says "debt is high relative to income"; if the fitted coefficient said the
    opposite (collinearity, a small sample), that text would be false for the cases it is
    given to. Scorecard practice is to remove such features: one at a time, the worst
    violation first, until every remaining coefficient agrees (`directions`: +1 when higher
    values mean more risk, -1 when lower values do). Returns the pipeline and what was dropped.
    """
    kept = list(X.columns)
    dropped: list[str] = []
    while True:
        pipeline = fit_scorecard(X.select(kept), y)
        coef = pipeline.named_steps["logit"].coef_[0]
        violation = {name: c * directions.get(name, 1) for name, c in zip(kept, coef, strict=True)}
        worst = min(violation, key=violation.__getitem__)
        if violation[worst] >= 0 or len(kept) == 1:
            return pipeline, dropped
        kept.remove(worst)
        dropped.append(worst)


def model_features(pipeline: Pipeline) -> list[str]:
    """The feature names, in the order the pipeline was fitted on."""
    return [str(name) for name in pipeline.feature_names_in_]


def standardised(pipeline: Pipeline, matrix: np.ndarray) -> np.ndarray:
    """z: the imputed, standardised features, computed exactly as the pipeline does."""
    imputer = pipeline.named_steps["impute"]
    scaler = pipeline.named_steps["scale"]
    imputed = np.where(np.isnan(matrix), imputer.statistics_, matrix)
    return (imputed - scaler.mean_) / scaler.scale_


def contributions_from_matrix(pipeline: Pipeline, matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-case logit contributions for a prepared matrix (see `contributions`)."""
    logit = pipeline.named_steps["logit"]
    coef = logit.coef_[0]
    # c_j = coef_j * (z_j - mean_train(z_j)). The scaler centres on the training mean of the
    # imputed feature, so mean_train(z_j) is exactly 0 and the base logit is the intercept.
    return standardised(pipeline, matrix) * coef, float(logit.intercept_[0])


def contributions(pipeline: Pipeline, X: pl.DataFrame) -> tuple[np.ndarray, float]:
    """(n x k contributions to the logit, base logit), columns in `model_features` order.

    Row sums plus the base logit equal the model's logit (`decision_function`) exactly; a
    positive contribution pushes that case's PD up relative to the average training case.
    """
    return contributions_from_matrix(pipeline, feature_matrix(X, model_features(pipeline)))

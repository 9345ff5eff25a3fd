"""The challenger family: gradient-boosted trees (scikit-learn HistGradientBoosting).

Trees often rank better than a scorecard, but their per-case explanations need TreeSHAP
(about 2,700 rows/s here), so a tree model is only ever a challenger: scored in shadow next to
the champion, compared, never acted on (`models.registry.CHAMPION_FAMILIES`). Monotone
constraints follow each feature's declared risk direction, so even the challenger cannot learn
that, say, more delinquencies lower the risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from models.scorecard import feature_frame

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

MAX_ITER = 200
LEARNING_RATE = 0.05
MAX_LEAF_NODES = 15
MIN_SAMPLES_LEAF = 50
L2_REGULARIZATION = 1.0
RANDOM_STATE = 0


def fit_gradient_boosting(
    X: pl.DataFrame, y: np.ndarray, directions: Mapping[str, int]
) -> HistGradientBoostingClassifier:
    """Fit on every column of `X`; missing values are handled natively by the trees.

    Small trees, a slow learning rate and large leaves: bad outcomes are rare (about 2 %), and
    deep trees would memorise the few hundred positives. Early stopping is off so a rerun on the
    same data gives the same model (its validation split would be random).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    target = np.asarray(y).astype(np.int8)
    if set(np.unique(target)) != {0, 1}:
        raise ValueError("the target needs both classes (0 and 1) to fit a model")
    model = HistGradientBoostingClassifier(
        max_iter=MAX_ITER,
        learning_rate=LEARNING_RATE,
        max_leaf_nodes=MAX_LEAF_NODES,
        min_samples_leaf=MIN_SAMPLES_LEAF,
        l2_regularization=L2_REGULARIZATION,
        monotonic_cst=[int(directions.get(name, 0)) for name in X.columns],
        early_stopping=False,
        random_state=RANDOM_STATE,
    )
    model.fit(feature_frame(X, X.columns), target)
    return model

"""Discrimination and calibration measures logged with every trained model.

AUC and KS say whether the model ranks bad cases above good ones; Brier and the calibration
table say whether the PDs are right in absolute terms, which matters because policy and risk
bands compare PDs with fixed thresholds.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

CALIBRATION_BINS = 10


def discrimination(y: np.ndarray, pd_: np.ndarray) -> dict[str, float]:
    """AUC, KS and Brier score; AUC and KS are NaN when only one class is present."""
    from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

    y = np.asarray(y).astype(np.int8)
    brier = float(brier_score_loss(y, pd_)) if len(y) else math.nan
    if len(np.unique(y)) < 2:
        return {"auc": math.nan, "ks": math.nan, "brier": brier}
    fpr, tpr, _ = roc_curve(y, pd_)
    return {
        "auc": float(roc_auc_score(y, pd_)),
        "ks": float(np.max(tpr - fpr)),
        "brier": brier,
    }


def calibration_table(split: str, y: np.ndarray, pd_: np.ndarray) -> pl.DataFrame:
    """Predicted against observed bad rate in equal-count bins of predicted PD.

    Bins are by rank, not by `qcut`, so ties in PD cannot collapse bins on small samples.
    """
    n = len(pd_)
    order = np.argsort(pd_, kind="stable")
    bins = np.empty(n, dtype=np.int64)
    bins[order] = np.arange(n) * CALIBRATION_BINS // max(n, 1)
    frame = pl.DataFrame({"bin": bins + 1, "pd": pd_, "bad": np.asarray(y).astype(np.int8)})
    return (
        frame.group_by("bin")
        .agg(
            pl.len().alias("n"),
            pl.col("pd").min().alias("min_pd"),
            pl.col("pd").max().alias("max_pd"),
            pl.col("pd").mean().alias("mean_pd"),
            pl.col("bad").sum().alias("bads"),
            pl.col("bad").mean().alias("observed_bad_rate"),
        )
        .sort("bin")
        .select(pl.lit(split).alias("split"), pl.all())
    )

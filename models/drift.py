"""Score drift: the population stability index of today's PDs against the training PDs.

At training time the training PDs are cut into equal-count bins and each bin's share is stored
with the model (MLmodel metadata, covered by the artefact digest) and, on first use, in the
audit table `model_reference_bins`. Scoring compares today's shares with those: PSI below 0.1
is stable, 0.1-0.25 a shift worth a look, above 0.25 a population the model was not built for.
"""

from __future__ import annotations

import numpy as np
import polars as pl

REFERENCE_BINS = 10
# Empty bins get this share so the log ratio stays finite (standard PSI practice).
SHARE_FLOOR = 1e-4


def reference_bins(pd_: np.ndarray, bins: int = REFERENCE_BINS) -> pl.DataFrame:
    """Equal-count bins of training PDs: bin, lower_pd (None = open), upper_pd, share.

    Edges are quantiles; duplicate edges (many tied PDs) are merged, so a bin is never empty
    by construction and shares are measured, not assumed to be 1/bins.
    """
    values = np.asarray(pd_, dtype=np.float64)
    if len(values) == 0:
        raise ValueError("reference bins need at least one training score")
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
    lower = [None, *inner.tolist()]
    upper = [*inner.tolist(), None]
    return pl.DataFrame(
        {
            "bin": list(range(1, len(inner) + 2)),
            "lower_pd": lower,
            "upper_pd": upper,
            "share": (counts / counts.sum()).tolist(),
        },
        schema={
            "bin": pl.Int32,
            "lower_pd": pl.Float64,
            "upper_pd": pl.Float64,
            "share": pl.Float64,
        },
    )


def population_shares(pd_: np.ndarray, reference: pl.DataFrame) -> np.ndarray:
    """Share of `pd_` in each reference bin (same edges, same side rule)."""
    inner = reference.sort("bin")["upper_pd"].drop_nulls().to_numpy()
    counts = np.bincount(
        np.searchsorted(inner, np.asarray(pd_, dtype=np.float64), side="right"),
        minlength=len(inner) + 1,
    )
    return counts / max(int(counts.sum()), 1)


def psi(pd_: np.ndarray, reference: pl.DataFrame) -> float:
    """Population stability index of `pd_` against the reference shares (NaN if no scores)."""
    if len(pd_) == 0:
        return float("nan")
    expected = np.maximum(reference.sort("bin")["share"].to_numpy(), SHARE_FLOOR)
    actual = np.maximum(population_shares(pd_, reference), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))

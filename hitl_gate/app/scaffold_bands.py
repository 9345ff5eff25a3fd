"""Risk bands that send a declared share of cases to human review (`hitl domain init
--review-share`).

The starter policy approves bands A and B, reviews C and D and declines E. Bands at fixed
multiples of the bad rate send whatever share falls between them to review (40 % on some
samples), which no lender staffs for. Given a share, the scaffold fits the same scorecard the
model will be (on the rows before `validation_from`), scores the validation rows and places
the bounds on those PDs: E keeps its bound (declining is a risk decision, not a staffing one),
and B is moved up until only `share` of the validation cases lie between B and E. The shares
are measured on the scaffold's own fit; the trained model is calibrated afterwards, so
`hitl policy whatif` on real runs is the figure to trust.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

BAND_NAMES = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class BandPlan:
    """Band bounds and the route shares they give on the validation rows."""

    bands: dict[str, float]
    approve: float
    review: float
    decline: float

    def describe(self) -> str:
        return (
            f"bands set for a review share of {self.review:.0%} on the validation rows "
            f"(approve {self.approve:.0%}, decline {self.decline:.0%})"
        )


def validation_pds(
    features: pl.DataFrame, label: pl.Series, is_validation: pl.Series
) -> np.ndarray:
    """PDs of the validation rows from a scorecard fitted on the earlier rows."""
    from models.scorecard import feature_frame, fit_scorecard

    train = features.filter(~is_validation)
    y = label.filter(~is_validation).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("the training rows need both outcomes to place bands by review share")
    model = fit_scorecard(train, y)
    held_out = features.filter(is_validation)
    return np.asarray(model.predict_proba(feature_frame(held_out, features.columns))[:, 1])


def _ascending(bounds: list[float]) -> list[float]:
    """Strictly ascending, rounded bounds in (0, 1): ties nudged up by a hundredth of a point."""
    out: list[float] = []
    for bound in bounds:
        value = round(min(max(bound, 1e-4), 0.9999), 4)
        if out and value <= out[-1]:
            value = round(out[-1] + 1e-4, 4)
        out.append(value)
    return out


def bands_for_review_share(pds: np.ndarray, share: float, decline_bound: float) -> BandPlan:
    """Bounds A-D (E takes the rest) so that about `share` of `pds` falls in C and D."""
    if not 0 < share < 1:
        raise ValueError(f"review share must be between 0 and 1, not {share}")
    if len(pds) == 0:
        raise ValueError("no validation rows to place bands on")
    below_top = float(np.mean(pds <= decline_bound))
    approve = max(below_top - share, 0.0)
    b = float(np.quantile(pds, approve)) if approve > 0 else float(np.min(pds)) / 2
    a = float(np.quantile(pds, approve / 2)) if approve > 0 else b / 2
    c = float(np.quantile(pds, approve + (below_top - approve) / 2))
    bounds = _ascending([a, b, c, decline_bound])
    bands = dict(zip(BAND_NAMES, [*bounds, 1.0], strict=True))
    index = np.searchsorted(np.array(bounds), pds, side="left")
    return BandPlan(
        bands=bands,
        approve=float(np.mean(index <= 1)),
        review=float(np.mean((index >= 2) & (index <= 3))),
        decline=float(np.mean(index >= 4)),
    )

"""The leakage gate: a model that is too good to be true is never promoted without a person.

Outcome leakage is an input that already knows the outcome: a copy of the decision ("action
taken", "approved"), or behaviour recorded after it (spending, payments). A model trained on
it looks excellent in validation and is worthless, or worse, in production, and its reasons
("Action is high") explain nothing. Credit models rank with a validation AUC of about 0.65 to
0.85; so training measures, for every model feature, the AUC of that feature alone (either
direction, and of its missingness), and refuses to promote a version automatically when the
model's validation AUC or any single feature's AUC reaches the domain's `model.leakage` limits
(defaults 0.95 and 0.90, hitl_gate/core/lawful.py). The check is logged with the run, tagged on
the registered version (`leakage_check`) and written into its model card.

A person may still promote a flagged version (the column may be legitimate), but only by saying
so: `require_leakage_cleared(..., override_reason=...)` is what the promote command calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from hitl_gate.core.lawful import LeakageLimits
from models.registry import PromotionError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The registered version's tag: `passed`, or `failed: <reasons>`.
LEAKAGE_TAG = "leakage_check"
PASSED = "passed"


class LeakageRefused(PromotionError):
    """A promotion of a version flagged by the leakage gate, without an explicit override."""


def single_feature_auc(values: np.ndarray, y: np.ndarray, min_class_rows: int) -> float | None:
    """The AUC of one feature alone, whichever direction ranks better; None if not measurable.

    Both the present values (on the rows that have one) and the missingness pattern are
    measured, and the larger is returned: a column filled in only for bad loans leaks through
    its nulls. Fewer than `min_class_rows` rows of either class: None (not judged).
    """
    from sklearn.metrics import roc_auc_score

    x = np.asarray(values, dtype=np.float64)
    target = np.asarray(y).astype(np.int8)
    present = np.isfinite(x)
    found: list[float] = []
    for mask, scores in ((present, x), (np.ones_like(present), (~present).astype(np.float64))):
        labels = target[mask]
        positives = int(labels.sum())
        if min(positives, len(labels) - positives) < min_class_rows:
            continue
        if np.unique(scores[mask]).size < 2:
            continue
        auc = float(roc_auc_score(labels, scores[mask]))
        found.append(max(auc, 1.0 - auc))
    return max(found) if found else None


@dataclass(frozen=True)
class LeakageCheck:
    """What the gate measured and decided for one trained version."""

    validation_auc: float
    feature_aucs: dict[str, float]
    limits: LeakageLimits = field(default_factory=LeakageLimits)

    @property
    def flagged_features(self) -> list[str]:
        """Features whose own AUC reaches the limit, the strongest first."""
        over = [(auc, name) for name, auc in self.feature_aucs.items()]
        over = [item for item in over if item[0] >= self.limits.max_feature_auc]
        return [name for _, name in sorted(over, key=lambda item: (-item[0], item[1]))]

    @property
    def model_flagged(self) -> bool:
        """The validation AUC itself is implausibly high."""
        auc = self.validation_auc
        return math.isfinite(auc) and auc >= self.limits.max_validation_auc

    @property
    def passed(self) -> bool:
        return not self.model_flagged and not self.flagged_features

    def reasons(self) -> list[str]:
        """One sentence per finding, naming the numbers and the columns."""
        out = []
        if self.model_flagged:
            out.append(
                f"validation AUC {self.validation_auc:.3f} >= {self.limits.max_validation_auc}"
            )
        for name in self.flagged_features:
            out.append(
                f"feature '{name}' alone has AUC {self.feature_aucs[name]:.3f} >= "
                f"{self.limits.max_feature_auc}"
            )
        return out

    def tag(self) -> str:
        """The `leakage_check` tag value of the registered version."""
        return PASSED if self.passed else "failed: " + "; ".join(self.reasons())

    def describe(self) -> str:
        """One line for logs and the training summary."""
        if self.passed:
            return (
                f"leakage check passed (validation AUC {self.validation_auc:.3f}, strongest "
                f"single feature {self.strongest()})"
            )
        return (
            "leakage check FAILED, not promoted automatically: "
            + "; ".join(self.reasons())
            + ". Declare the column as an outcome (sample.outcome_columns) if it is known only "
            "after the decision, or promote explicitly with an override reason."
        )

    def strongest(self) -> str:
        if not self.feature_aucs:
            return "none measured"
        name = max(self.feature_aucs, key=lambda n: (self.feature_aucs[n], n))
        return f"{name} AUC {self.feature_aucs[name]:.3f}"

    def params(self) -> dict[str, str | float]:
        """Run parameters logged with the training run."""
        return {
            "leakage_check": PASSED if self.passed else "failed",
            "leakage_flagged": ",".join(self.flagged_features) or "none",
            "leakage_max_validation_auc": self.limits.max_validation_auc,
            "leakage_max_feature_auc": self.limits.max_feature_auc,
        }

    def card_lines(self) -> list[str]:
        """The model card's section on the check."""
        lines = [
            "## Leakage check",
            "",
            f"- Result: **{'passed' if self.passed else 'FAILED'}** (limits: validation AUC < "
            f"{self.limits.max_validation_auc}, any single feature's AUC < "
            f"{self.limits.max_feature_auc}; models/leakage.py).",
        ]
        lines += [f"- {reason}" for reason in self.reasons()]
        if not self.passed:
            lines.append(
                "- Not promoted automatically. A person may promote it only with an explicit "
                "override reason, recorded with the promotion."
            )
        lines += ["", "| feature | AUC alone |", "|---|---|"]
        for name, auc in sorted(self.feature_aucs.items(), key=lambda item: -item[1]):
            lines.append(f"| {name} | {auc:.4f} |")
        return [*lines, ""]


def check_leakage(
    frame: pl.DataFrame,
    features: Sequence[str],
    y: np.ndarray,
    validation_auc: float,
    limits: LeakageLimits,
) -> LeakageCheck:
    """Measure every feature of `frame` alone against the 0/1 outcome `y`, and the model's AUC."""
    from models.scorecard import feature_matrix

    matrix = feature_matrix(frame, list(features))
    aucs = {}
    for j, name in enumerate(features):
        auc = single_feature_auc(matrix[:, j], y, limits.min_class_rows)
        if auc is not None:
            aucs[name] = auc
    return LeakageCheck(validation_auc=validation_auc, feature_aucs=aucs, limits=limits)


def require_leakage_cleared(
    client: MlflowClient, model_name: str, version: str, *, override_reason: str | None
) -> str | None:
    """Refuse to make a flagged version champion unless a person explicitly overrides the gate.

    Returns None when the version passed (or predates the gate: no tag), or the text to record
    with the promotion when an override was given; raises `LeakageRefused` naming the findings
    otherwise. Call it before moving the `champion` alias (`hitl model promote` does).
    """
    tag = client.get_model_version(model_name, str(version)).tags.get(LEAKAGE_TAG, PASSED)
    if tag == PASSED:
        return None
    if override_reason is None or not override_reason.strip():
        raise LeakageRefused(
            f"{model_name} v{version} failed the leakage check ({tag.removeprefix('failed: ')}); "
            "promote it only with an explicit override reason"
        )
    return f"leakage check overridden: {override_reason.strip()} (was {tag})"

"""Declarations that keep a domain's decisions lawful: protected attributes, leakage limits and
fairness thresholds, and the column sets every stage derives from them.

A *protected attribute* is an input column holding a basis the law forbids credit decisions to
use (US Regulation B 12 CFR 1002.6(b): race, colour, religion, national origin, sex, marital
status, age, receipt of public assistance, the good-faith exercise of consumer-credit rights;
the special categories of GDPR Art 9). Its *proxies* are other columns the domain's owner
declares as standing in for it (a first name for sex, a postcode for race). Such columns are
kept only to measure fairness: they are never model features (directly or inside a derived
feature), never in a policy condition, never an adverse-action reason, and hidden from reviewers
unless a role is granted them. `hitl domain check` enforces the first three
(hitl_gate/app/domain_check.py); review masking calls `protected.protected_columns`.

These models live outside `domain.py` so the declaration gains them with one field each; the
column sets derived from a loaded declaration are in `hitl_gate/core/protected.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ProtectedCategory = Literal[
    "race",
    "colour",
    "religion",
    "national_origin",
    "sex",
    "marital_status",
    "age",
    "public_assistance_income",
    "consumer_rights_exercised",
    "ethnic_origin",
    "disability",
    "sexual_orientation",
    "health",
    "genetic",
    "political_opinion",
    "trade_union_membership",
    "other",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProtectedAttribute(_Strict):
    """One protected input column: its legal category, reference group and declared proxies.

    `reference` is the group adverse-impact ratios compare against (the group the law's
    comparisons take as control, e.g. `White` for race); without it the largest group is used.
    `proxies` are other contract columns that stand in for this attribute: they are treated
    exactly like the attribute itself everywhere except fairness measurement. A `reference`
    of a binned attribute is an interval label as Polars writes it, e.g. `[25, 62)`.
    """

    category: ProtectedCategory
    reference: str | None = None
    proxies: list[str] = Field(default_factory=list)
    # A numeric attribute (age) is measured in intervals starting at these bounds, e.g.
    # [25, 62] gives the groups [-inf, 25), [25, 62), [62, inf).
    bins: list[float] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _bins_ascend(self) -> ProtectedAttribute:
        if any(b <= a for a, b in zip(self.bins, self.bins[1:], strict=False)):
            raise ValueError(f"protected attribute bins must ascend: {self.bins}")
        return self


class LeakageLimits(_Strict):
    """When a trained model is too good to be true, so training refuses to promote it alone.

    A credit model ranks bad loans above good ones with a validation AUC of about 0.65 to 0.85;
    0.95 and above means some input knows the outcome (a copy of the decision, post-decision
    behaviour). One feature whose own AUC reaches `max_feature_auc` is a leak candidate by
    itself. `min_class_rows`: fewer rows of either class and a feature is not judged.
    """

    max_validation_auc: float = Field(default=0.95, gt=0.5, le=1.0)
    max_feature_auc: float = Field(default=0.90, gt=0.5, le=1.0)
    min_class_rows: int = Field(default=10, ge=1)


class FairnessLimits(_Strict):
    """Warn and block thresholds of the fairness checks (hitl_gate/observability/fairness.py).

    The adverse impact ratio (AIR) is a group's approval rate over the reference group's. Below
    `warn_ratio` (the four-fifths rule) the check warns, for groups of at least `min_group_cases`.
    It fails with severity ERROR when even the upper bound of the ratio's `confidence` interval
    is below `block_ratio`: the disparity is real, not sampling noise in a small group. A
    standardised mean difference of scores beyond `warn_smd` (in either direction) warns.
    """

    warn_ratio: float = Field(default=0.8, gt=0, le=1)
    block_ratio: float = Field(default=0.8, gt=0, le=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_group_cases: int = Field(default=30, ge=1)
    warn_smd: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _block_not_above_warn(self) -> FairnessLimits:
        if self.block_ratio > self.warn_ratio:
            raise ValueError("fairness.block_ratio must not exceed fairness.warn_ratio")
        return self


def undeclared_protected(
    attributes: dict[str, ProtectedAttribute], columns: dict[str, object]
) -> list[str]:
    """Protected attributes and proxies that are not contract columns (a typo hides nothing)."""
    named = [*attributes, *(p for a in attributes.values() for p in a.proxies)]
    return [c for c in dict.fromkeys(named) if c not in columns]

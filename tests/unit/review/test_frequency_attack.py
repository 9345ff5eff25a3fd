"""Re-identification by frequency ranking, measured on the demo data.

The attacker is an analyst who knows how applicants spread over the states (public figures;
here the whole demo sample) and sees the state column of their batches as masked for their
role. They rank the masked values by frequency and map them onto the public ranking; a case is
re-identified when the state named for it is its true state. The bound: no better than naming
the commonest state for everyone (which needs no data at all) plus one point.

The same attack on the former keyed pseudonyms re-identifies a quarter of the cases, and on
region groups (the region's largest state) a third: both are shown so the test can fail.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import load_domain
from hitl_gate.review.export.masking import apply_masking
from hitl_gate.review.settings import MaskRule, review_settings

SAMPLE = (
    Path(__file__).resolve().parents[3] / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
)
EXPORTED = 2000  # cases an analyst sees (about five days of the analyst queue)
BOUND_OVER_PRIOR = 0.01
REGIONS = {
    "northeast": ["CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"],
    "midwest": ["IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"],
    "south": [
        "DE",
        "FL",
        "GA",
        "MD",
        "NC",
        "SC",
        "VA",
        "DC",
        "WV",
        "AL",
        "KY",
        "MS",
        "TN",
        "AR",
        "LA",
        "OK",
        "TX",
    ],
    "west": ["AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"],
}


def _ranking_attack(masked: list[object], truth: list[str], public: list[str]) -> float:
    """Map masked values to states by frequency rank; the share of cases named correctly."""
    order = [value for value, _ in Counter(masked).most_common()]
    named = {value: public[min(rank, len(public) - 1)] for rank, value in enumerate(order)}
    return sum(named[m] == t for m, t in zip(masked, truth, strict=True)) / len(truth)


def _largest_in_group(masked: list[object], truth: list[str], public: Counter) -> float:
    """Name each group's most common state (the best guess from a region)."""
    best = {group: max(states, key=lambda s: public[s]) for group, states in REGIONS.items()}
    return sum(best.get(str(m)) == t for m, t in zip(masked, truth, strict=True)) / len(truth)


@pytest.fixture(scope="module")
def demo() -> tuple[pl.DataFrame, list[str], Counter]:
    cases = pl.read_parquet(SAMPLE, columns=["state"])
    counts = Counter(cases["state"].to_list())
    public = [state for state, _ in counts.most_common()]
    return cases.sample(EXPORTED, seed=7), public, counts


def _masked(cases: pl.DataFrame, rule: MaskRule) -> list[object]:
    masked, _ = apply_masking(cases, {"state": rule}, b"k" * 32, domain="consumer_credit")
    return masked["state"].to_list()


def test_the_shipped_analyst_masking_resists_frequency_ranking(demo) -> None:
    cases, public, counts = demo
    truth = cases["state"].to_list()
    prior = sum(t == public[0] for t in truth) / len(truth)
    settings = review_settings(load_domain("consumer_credit"))
    assert settings is not None
    rule = settings.masking_for("analyst")["state"]
    shipped = _ranking_attack(_masked(cases, rule), truth, public)
    assert shipped <= prior + BOUND_OVER_PRIOR, (shipped, prior)

    pseudonyms = _ranking_attack(_masked(cases, MaskRule(method="pseudonymise")), truth, public)
    assert pseudonyms > 0.2  # the attack works on pseudonyms of a 50-value column
    grouped = _masked(cases, MaskRule(method="group", groups=REGIONS))
    assert _largest_in_group(grouped, truth, counts) > 0.3  # and regions name CA, TX, NY, IL


def test_group_masks_unlisted_values_as_other_and_keeps_nulls() -> None:
    frame = pl.DataFrame({"state": ["CA", "ZZ", None]})
    rule = MaskRule(method="group", groups={"west": ["CA"]})
    masked, _ = apply_masking(frame, {"state": rule}, b"k" * 32, domain="d")
    assert masked["state"].to_list() == ["west", "other", None]
    with pytest.raises(ValueError, match="exactly one group"):
        MaskRule(method="group", groups={"a": ["CA"], "b": ["CA"]})

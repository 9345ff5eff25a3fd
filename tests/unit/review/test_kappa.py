"""Cohen's kappa and its Fleiss-Cohen-Everitt interval against tables worked out by hand,
including the degenerate cases a small team produces: one category, perfect agreement, tiny n."""

from __future__ import annotations

import math

import pytest

from hitl_gate.review.kappa import MIN_PAIRS_FOR_INTERVAL, Z95, cohen_kappa

A, D = "approve", "decline"


def table(aa: int, ad: int, da: int, dd: int) -> list[tuple[str, str]]:
    """Pairs from a 2x2 table: rows the first reviewer, columns the second."""
    return [(A, A)] * aa + [(A, D)] * ad + [(D, A)] * da + [(D, D)] * dd


def test_symmetric_table_by_hand() -> None:
    # n=10, [[4,1],[1,4]]: po = 0.8; marginals 0.5 each so pe = 0.5; kappa = 0.3/0.5 = 0.6.
    # FCE: diagonal = 2 * 0.4 * (1 - 1.0 * 0.4)^2 = 0.288; off = 2 * 0.1 * (0.5 + 0.5)^2 = 0.2,
    # times (1 - 0.6)^2 = 0.032; minus (0.6 - 0.5 * 0.4)^2 = 0.16; over 10 * 0.25:
    # var = (0.288 + 0.032 - 0.16) / 2.5 = 0.064, se = 0.2530.
    k = cohen_kappa(table(4, 1, 1, 4))
    assert k.n == 10 and k.observed == pytest.approx(0.8) and k.expected == pytest.approx(0.5)
    assert k.kappa == pytest.approx(0.6)
    se = math.sqrt(0.064)
    assert k.low == pytest.approx(0.6 - Z95 * se)
    assert k.high == 1.0  # 0.6 + 1.96 * 0.253 = 1.096, clipped to the largest kappa


def test_asymmetric_table_by_hand() -> None:
    # n=20, [[10,2],[6,2]]: po = 0.6; rows 0.6/0.4, cols 0.8/0.2; pe = 0.48 + 0.08 = 0.56;
    # kappa = 0.04/0.44 = 0.090909, k' = 1 - kappa = 0.909091.
    # diagonal: 0.5*(1 - 1.4k')^2 + 0.1*(1 - 0.6k')^2 = 0.5*0.074380 + 0.1*0.206612 = 0.057851;
    # off: p(A,D)*(colA 0.8 + rowD 0.4)^2 + p(D,A)*(colD 0.2 + rowA 0.6)^2 = 0.144 + 0.192,
    # times k'^2 = 0.826446: 0.277686; minus (kappa - 0.56k')^2 = 0.174876;
    # var = 0.160661 / (20 * 0.44^2 = 3.872) = 0.041493.
    k = cohen_kappa(table(10, 2, 6, 2))
    kappa = 0.04 / 0.44
    kp = 1 - kappa
    diagonal = 0.5 * (1 - 1.4 * kp) ** 2 + 0.1 * (1 - 0.6 * kp) ** 2
    off = (0.1 * 1.2**2 + 0.3 * 0.8**2) * kp**2
    var = (diagonal + off - (kappa - 0.56 * kp) ** 2) / (20 * 0.44**2)
    assert k.kappa == pytest.approx(kappa)
    assert var == pytest.approx(0.041493, abs=1e-6)  # the hand figure above
    assert k.low == pytest.approx(kappa - Z95 * math.sqrt(var))
    assert k.high == pytest.approx(kappa + Z95 * math.sqrt(var))


def test_one_category_is_undefined_not_perfect() -> None:
    k = cohen_kappa(table(12, 0, 0, 0))
    assert k.kappa is None and k.low is None and "one verdict" in k.note
    assert k.observed == 1.0 and k.expected == 1.0


def test_perfect_agreement_over_two_categories() -> None:
    k = cohen_kappa(table(6, 0, 0, 6))
    assert k.kappa == pytest.approx(1.0)
    assert (k.low, k.high) == (pytest.approx(1.0), pytest.approx(1.0))
    assert "no width" in k.note


def test_agreement_worse_than_chance_is_negative() -> None:
    k = cohen_kappa(table(0, 6, 6, 0))
    assert k.kappa == pytest.approx(-1.0)
    assert k.low is not None and k.low >= -1.0


def test_tiny_n_has_kappa_but_no_interval() -> None:
    k = cohen_kappa(table(1, 0, 1, 1))
    # po = 2/3; rows A 1/3, D 2/3; cols A 2/3, D 1/3; pe = 2/9 + 2/9 = 4/9; kappa = (2/9)/(5/9).
    assert k.kappa == pytest.approx(0.4)
    assert k.low is None and k.high is None
    assert str(MIN_PAIRS_FOR_INTERVAL) in k.note


def test_one_pair_and_none() -> None:
    assert cohen_kappa([]).kappa is None
    assert cohen_kappa([(A, A)]).kappa is None  # one category
    one = cohen_kappa([(A, D)])
    assert one.kappa == pytest.approx(0.0) and one.low is None  # pe = 0, po = 0


def test_three_categories_order_of_pairs_does_not_matter() -> None:
    pairs = [(A, A)] * 5 + [(D, D)] * 4 + [("escalate", "escalate")] * 2 + [(A, "escalate")] * 1
    assert cohen_kappa(pairs) == cohen_kappa(list(reversed(pairs)))

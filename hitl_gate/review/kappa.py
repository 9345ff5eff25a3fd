"""Cohen's kappa between two reviewers, with a confidence interval that says how sure it is.

Four-eyes pairs decide the same cases independently; how often they agree beyond chance is the
measure of whether the second opinion is a real check. Kappa is (po - pe) / (1 - pe): observed
agreement po against the agreement pe two reviewers with the same verdict frequencies would
reach by chance.

The interval is the large-sample (Wald) interval with the standard error of Fleiss, Cohen and
Everitt (1969, "Large sample standard errors of kappa and weighted kappa", Psychological
Bulletin 72): closed-form, so the same table always gives the same interval and a test can
check it by hand, and it is the variance of kappa itself (the simpler Cohen 1960 form treats
pe as known and is too narrow). A bootstrap would be random and no better at the sizes a
pair shares. Below `MIN_PAIRS_FOR_INTERVAL` cases no interval is given (the normal
approximation does not hold); kappa is undefined when pe = 1 (both reviewers used one
category only), and reported as such rather than as 0 or 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

MIN_PAIRS_FOR_INTERVAL = 10
Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


@dataclass(frozen=True)
class Kappa:
    """Kappa of `n` paired verdicts with its 95% interval (None: undefined or too few)."""

    n: int
    observed: float | None
    expected: float | None
    kappa: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> Kappa:
    """Kappa of (first verdict, second verdict) pairs, with the Fleiss-Cohen-Everitt interval."""
    n = len(pairs)
    if n == 0:
        return Kappa(0, None, None, None, note="no paired verdicts")
    categories = sorted({v for pair in pairs for v in pair})
    cells = Counter(pairs)
    p = {(a, b): cells[(a, b)] / n for a in categories for b in categories}
    rows = {a: sum(p[(a, b)] for b in categories) for a in categories}
    cols = {b: sum(p[(a, b)] for a in categories) for b in categories}
    po = sum(p[(a, a)] for a in categories)
    pe = sum(rows[a] * cols[a] for a in categories)
    if math.isclose(pe, 1.0):
        return Kappa(n, po, pe, None, note="undefined: both reviewers used one verdict only")
    k = (po - pe) / (1 - pe)
    if n < MIN_PAIRS_FOR_INTERVAL:
        return Kappa(n, po, pe, k, note=f"fewer than {MIN_PAIRS_FOR_INTERVAL} pairs: no interval")
    diagonal = sum(p[(a, a)] * (1 - (rows[a] + cols[a]) * (1 - k)) ** 2 for a in categories)
    off = sum(
        p[(a, b)] * (cols[a] + rows[b]) ** 2 for a in categories for b in categories if a != b
    )
    variance = (diagonal + (1 - k) ** 2 * off - (k - pe * (1 - k)) ** 2) / (n * (1 - pe) ** 2)
    se = math.sqrt(max(variance, 0.0))
    note = "perfect agreement: the interval has no width" if se == 0 else ""
    return Kappa(n, po, pe, k, max(-1.0, k - Z95 * se), min(1.0, k + Z95 * se), note)

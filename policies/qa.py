"""QA sampling of automatic decisions and the estimated error rate of automation.

A share of the cases the policy would decide automatically is sent to a reviewer anyway. The
choice is a deterministic function of the case id and the policy digest (SHA-256, not Polars'
`hash`, whose values are not stable across versions), so re-running a day picks the same cases
and a new policy version draws a fresh, independent sample.

Stratified by route and risk band: within each stratum a case is sampled when its hash, read as
a number in [0, 1), is below the route's rate; when that leaves fewer than `min_per_stratum`,
the stratum's lowest hashes are taken instead, so small bands are always measured. Each sampled
case carries its stratum's sampling probability, which the estimator uses as a weight.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import polars as pl

from policies.model import AUTO_APPROVE, AUTO_DECLINE, HUMAN_REVIEW, Policy

QA_REASON_CODE = "QA"
_AUTOMATIC = (AUTO_APPROVE, AUTO_DECLINE)
# What a reviewer's verdict must be for the automatic route to count as right.
AGREEING_VERDICT = {AUTO_APPROVE: "approve", AUTO_DECLINE: "decline"}


def sample_key(case_ids: pl.Series, policy_digest: str) -> pl.Series:
    """A uniform number in [0, 1) per case, fixed by case id and policy digest."""
    salt = policy_digest.encode("utf-8") + b"|"
    values = [
        int.from_bytes(hashlib.sha256(salt + str(c).encode("utf-8")).digest()[:8], "big") / 2**64
        for c in case_ids.to_list()
    ]
    return pl.Series("qa_key", values, dtype=pl.Float64)


def apply_qa_sampling(policy: Policy, routed: pl.DataFrame, case_id: str) -> pl.DataFrame:
    """Send the QA sample of automatic routes to review; adds `qa_sample` and `qa_probability`.

    `proposed_route` must already hold the policy's own route (see `policies.decide`).
    """
    qa = policy.qa_sampling
    if qa is None or routed.height == 0:
        return routed.with_columns(
            pl.lit(False).alias("qa_sample"), pl.lit(None, pl.Float64).alias("qa_probability")
        )
    stratum = [pl.col("proposed_route")]
    if qa.strata_column:
        stratum.append(pl.col(qa.strata_column).cast(pl.String).fill_null("<null>"))
    rate = pl.col("proposed_route").replace_strict(
        {r: qa.rate_for(r) for r in _AUTOMATIC}, default=0.0, return_dtype=pl.Float64
    )
    keyed = routed.with_columns(
        sample_key(routed.get_column(case_id), policy.digest).alias("__qa_key"),
        rate.alias("__qa_rate"),
        pl.concat_str(stratum, separator="|").alias("__qa_stratum"),
    )
    automatic = pl.col("proposed_route").is_in(_AUTOMATIC)
    rank = pl.col("__qa_key").rank("ordinal").over("__qa_stratum")
    size = pl.len().over("__qa_stratum")
    by_rate = pl.col("__qa_key") < pl.col("__qa_rate")
    chosen = automatic & (by_rate | (rank <= qa.min_per_stratum))
    # Inclusion probability of a case of this stratum: the rate, or the forced minimum share.
    floor = pl.min_horizontal(pl.lit(qa.min_per_stratum, pl.Float64), size) / size
    probability = pl.max_horizontal(pl.col("__qa_rate"), floor)
    keyed = keyed.with_columns(
        chosen.alias("qa_sample"),
        pl.when(chosen).then(probability).otherwise(None).alias("qa_probability"),
    )
    return keyed.with_columns(
        pl.when("qa_sample").then(pl.lit(HUMAN_REVIEW)).otherwise("route").alias("route"),
        pl.when("qa_sample")
        .then(pl.lit(QA_REASON_CODE))
        .otherwise("route_reason_code")
        .alias("route_reason_code"),
        pl.when("qa_sample").then(pl.lit(qa.queue)).otherwise("review_queue").alias("review_queue"),
        pl.when("qa_sample")
        .then(pl.lit(qa.priority, pl.Int32))
        .otherwise("review_priority")
        .alias("review_priority"),
    ).drop("__qa_key", "__qa_rate", "__qa_stratum")


@dataclass(frozen=True)
class ErrorEstimate:
    """Estimated share of automatic decisions a reviewer would overturn, with a Wilson CI."""

    stratum: str
    reviewed: int
    disagreements: int
    rate: float
    low: float
    high: float


def wilson_interval(k: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (n may be an effective size).

    Why Wilson: error rates of automation are small and samples modest; the normal interval
    then dips below 0 or collapses to [0, 0] when no error was seen, Wilson does not.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def estimate_error_rate(reviewed: pl.DataFrame, z: float = 1.959964) -> list[ErrorEstimate]:
    """Per automatic route and overall, from QA-sampled cases that have a verdict.

    `reviewed` has `proposed_route`, `verdict` and `qa_probability`. The overall rate weights
    each case by 1 / its sampling probability (so an over-sampled small band does not dominate);
    its interval is Wilson's with Kish's effective sample size for those weights.
    """
    frame = reviewed.filter(pl.col("verdict").is_not_null()).with_columns(
        (pl.col("verdict") != pl.col("proposed_route").replace_strict(AGREEING_VERDICT))
        .cast(pl.Float64)
        .alias("wrong"),
        (1 / pl.col("qa_probability").fill_null(1.0)).alias("weight"),
    )
    estimates = []
    groups = [(route, frame.filter(pl.col("proposed_route") == route)) for route in _AUTOMATIC]
    for name, part in [*groups, ("all automatic", frame)]:
        n = part.height
        if n == 0:
            estimates.append(ErrorEstimate(name, 0, 0, float("nan"), 0.0, 1.0))
            continue
        weights = part.get_column("weight")
        rate = float((part.get_column("wrong") * weights).sum()) / float(weights.sum())
        n_eff = float(weights.sum()) ** 2 / float((weights**2).sum())
        low, high = wilson_interval(rate * n_eff, n_eff, z)
        estimates.append(
            ErrorEstimate(name, n, int(part.get_column("wrong").sum()), rate, low, high)
        )
    return estimates

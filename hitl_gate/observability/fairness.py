"""Fairness at every stage: does the model, the policy, the reviewer or the final action treat a
protected group worse than the reference group, and does human review widen or narrow the gap?

For each declared protected attribute (hitl_gate/core/lawful.py) and each of its groups, at four
stages of the same cases:

- `model_band`: approved when the case's risk band is not a decline band (what the model alone
  proposes; the same decline bands as the override rate, hitl_gate/observability/metrics.py);
- `policy_route`: `auto_approve` approved, `auto_decline` declined, a case sent to review keeps
  its band's proposal (what the automation would do without a person);
- `human_verdict`: a reviewed case's verdict, every other case as routed (a case still waiting
  for its verdict is left out);
- `final_action`: the executed action.

Per group: cases, approvals, approval rate, the *adverse impact ratio* (AIR: the group's approval
rate over the reference group's; the four-fifths rule flags below 0.8) with a Katz log
confidence interval, so a small group's ratio comes with its uncertainty, and the *standardised
mean difference* (SMD, pooled-SD Cohen's d) of the model's PD between the group and the
reference among the stage's cases (positive: the group is scored riskier). The reference group
is the declared `reference`, else the largest group. Missing values form the group `(missing)`.

Everything here is a pure function of Polars frames; the `decision_metrics` asset adds the rows
to `decision_metrics` and turns `fairness_findings` into asset checks, `hitl fairness report`
prints `fairness_table` for a period (the protected values and a period's cases are read by
`fairness_period.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from hitl_gate.core.lawful import FairnessLimits, ProtectedAttribute
from hitl_gate.observability.anomalies import ERROR, WARN, Finding
from hitl_gate.observability.metrics import METRIC_SCHEMA

STAGES = ("model_band", "policy_route", "human_verdict", "final_action")
MISSING = "(missing)"
APPROVE = "approve"
# The `decision_metrics` rows: metric name -> `fairness_table` column.
METRIC_COLUMNS = {
    "fairness_cases": "n",
    "fairness_approval_rate": "approval_rate",
    "fairness_air": "air",
    "fairness_air_low": "air_low",
    "fairness_air_high": "air_high",
    "fairness_smd": "smd",
}
TABLE_SCHEMA = pl.Schema(
    {
        "stage": pl.String,
        "attribute": pl.String,
        "category": pl.String,
        "group": pl.String,
        "reference": pl.String,
        "n": pl.Int64,
        "approvals": pl.Int64,
        "approval_rate": pl.Float64,
        "air": pl.Float64,
        "air_low": pl.Float64,
        "air_high": pl.Float64,
        "smd": pl.Float64,
    }
)


def stage_approvals(cases: pl.DataFrame, decline_bands: Sequence[str]) -> pl.DataFrame:
    """Add one column per stage: 1 approved, 0 declined, null when the case is not in it.

    `cases` needs risk_band, route, verdict and executed_action.
    """
    band = (
        pl.when(pl.col("risk_band").is_null())
        .then(None)
        .otherwise((~pl.col("risk_band").is_in(list(decline_bands))).cast(pl.Int8))
    )
    policy = (
        pl.when(pl.col("route") == "auto_approve")
        .then(pl.lit(1, pl.Int8))
        .when(pl.col("route") == "auto_decline")
        .then(pl.lit(0, pl.Int8))
        .when(pl.col("route") == "human_review")
        .then(band)
        .otherwise(None)
    )
    verdict = (
        pl.when(pl.col("verdict").is_not_null())
        .then((pl.col("verdict") == APPROVE).cast(pl.Int8))
        .when(pl.col("route") == "human_review")
        .then(None)
        .otherwise(policy)
    )
    final = (
        pl.when(pl.col("executed_action").is_null())
        .then(None)
        .otherwise((pl.col("executed_action") == APPROVE).cast(pl.Int8))
    )
    return cases.with_columns(
        band.alias("model_band"),
        policy.alias("policy_route"),
        verdict.alias("human_verdict"),
        final.alias("final_action"),
    )


def ratio_interval(
    approvals: int, n: int, ref_approvals: int, ref_n: int, confidence: float
) -> tuple[float | None, float | None, float | None]:
    """(AIR, low, high): the ratio of two approval rates and its Katz log interval.

    With no approval in the group the interval uses counts plus one half (Haldane's
    correction), so it still gets a finite upper bound. None when a rate is undefined.
    """
    if n == 0 or ref_n == 0 or ref_approvals == 0:
        return None, None, None
    air = (approvals / n) / (ref_approvals / ref_n)
    shift = 0.5 if approvals == 0 else 0.0
    a, b, c, d = (float(x) + shift for x in (approvals, n, ref_approvals, ref_n))
    log_ratio = math.log((a / b) / (c / d))
    se = math.sqrt(max(1 / a - 1 / b + 1 / c - 1 / d, 0.0))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return air, math.exp(log_ratio - z * se), math.exp(log_ratio + z * se)


class Scores(NamedTuple):
    """A group's PD for the SMD: the count, mean and sample variance of its known values.

    Summarised once per group (and per day's slice of it), whichever group it is compared with;
    both fairness paths (frames here, DuckDB in `fairness_db`) build it with `of` from the same
    values in the same order, so their figures are equal to the last bit.
    """

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: np.ndarray, missing: np.ndarray) -> Scores:
        """From PD `values` (float64, case order) where `missing` is False."""
        known = values[~missing]
        if len(known) < 2:
            return cls(len(known), math.nan, math.nan)
        return cls(len(known), float(known.mean()), float(known.var(ddof=1)))

    @classmethod
    def of_series(cls, pd: pl.Series) -> Scores:
        return cls.of(pd.cast(pl.Float64).to_numpy(), pd.is_null().to_numpy())


def standardised_mean_difference(group: Scores, reference: Scores) -> float | None:
    """(mean of group - mean of reference) / pooled SD; None below two values each or SD 0."""
    if group.n < 2 or reference.n < 2:
        return None
    pooled = ((group.n - 1) * group.var + (reference.n - 1) * reference.var) / (
        group.n + reference.n - 2
    )
    if pooled <= 0:
        return None
    return (group.mean - reference.mean) / math.sqrt(pooled)


def interval_labels(values: pl.Expr, bins: Sequence[float]) -> pl.Expr:
    """A numeric attribute as interval labels `[-inf, 25)`, `[25, 62)`, `[62, inf)`."""

    def fmt(bound: float) -> str:
        return f"{bound:g}"

    x = values.cast(pl.Float64, strict=False)
    bounds = [-math.inf, *bins, math.inf]
    expr: pl.Expr = pl.lit(None, pl.String)
    for low, high in reversed(list(zip(bounds, bounds[1:], strict=False))):
        expr = (
            pl.when((x >= low) & (x < high))
            .then(pl.lit(f"[{fmt(low)}, {fmt(high)})"))
            .otherwise(expr)
        )
    return expr


def _reference_group(groups: Sequence[Mapping[str, Any]], declared: str | None) -> str:
    """The declared reference when it occurs, else the largest group (ties: by name)."""
    if declared is not None and any(g["group"] == declared for g in groups):
        return declared
    return str(min(groups, key=lambda g: (-g["n"], g["group"]))["group"])


def _attribute_rows(
    staged: pl.DataFrame, stage: str, name: str, attribute: ProtectedAttribute, confidence: float
) -> list[dict[str, object]]:
    """The rows of one stage and one attribute."""
    group = interval_labels(pl.col(name), attribute.bins) if attribute.bins else pl.col(name)
    part = staged.filter(pl.col(stage).is_not_null()).with_columns(
        group.cast(pl.String).fill_null(MISSING).alias("__group")
    )
    if part.height == 0:
        return []
    counts = part.group_by("__group").agg(
        pl.len().alias("n"), pl.col(stage).cast(pl.Int64).sum().alias("approvals")
    )
    # Each group's PD in case order, split once (a filter per group was a pass per group).
    scores = {
        str(key[0]): Scores.of_series(frame["pd"])
        for key, frame in part.partition_by("__group", as_dict=True, maintain_order=True).items()
    }
    return group_rows(
        counts.rename({"__group": "group"}), scores.__getitem__,
        stage, name, attribute, confidence,
    )  # fmt: skip


def group_rows(
    counts: pl.DataFrame | Iterable[Mapping[str, Any]],
    scores: Callable[[str], Scores],
    stage: str,
    name: str,
    attribute: ProtectedAttribute,
    confidence: float,
) -> list[dict[str, object]]:
    """The rows of one stage and attribute from its groups' `counts` (group, n, approvals: a
    frame, or Python rows) and `scores(group)`, the summary of the PD of the group's cases (for
    the SMD)."""
    # A few groups: plain Python (Polars' per-call overhead was most of this function's cost);
    # text orders by code point as Polars orders it by UTF-8 bytes.
    if isinstance(counts, pl.DataFrame):
        counts = counts.select("group", "n", "approvals").rows(named=True)
    groups = sorted(counts, key=lambda g: g["group"])
    reference = _reference_group(groups, attribute.reference)
    ref = next(g for g in groups if g["group"] == reference)
    ref_scores = scores(reference)
    rows = []
    for row in groups:
        air, low, high = ratio_interval(
            row["approvals"], row["n"], ref["approvals"], ref["n"], confidence
        )
        rows.append(
            {
                "stage": stage,
                "attribute": name,
                "category": attribute.category,
                "group": row["group"],
                "reference": reference,
                "n": row["n"],
                "approvals": row["approvals"],
                "approval_rate": row["approvals"] / row["n"],
                "air": air,
                "air_low": low,
                "air_high": high,
                "smd": standardised_mean_difference(scores(row["group"]), ref_scores),
            }
        )
    return rows


def fairness_table(
    cases: pl.DataFrame,
    attributes: Mapping[str, ProtectedAttribute],
    decline_bands: Sequence[str],
    confidence: float = FairnessLimits().confidence,
) -> pl.DataFrame:
    """Per stage, attribute and group: approvals, AIR with its interval, SMD of the PD.

    `cases` has one row per case: pd, risk_band, route, verdict, executed_action and the
    protected attribute columns (absent attributes are skipped).
    """
    staged = stage_approvals(cases, decline_bands)
    rows: list[dict[str, object]] = []
    for stage in STAGES:
        for name, attribute in attributes.items():
            if name in cases.columns:
                rows += _attribute_rows(staged, stage, name, attribute, confidence)
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)


def fairness_metrics(
    cases: pl.DataFrame,
    attributes: Mapping[str, ProtectedAttribute],
    decline_bands: Sequence[str],
    confidence: float = FairnessLimits().confidence,
) -> pl.DataFrame:
    """`decision_metrics` rows per day: dimension `<attribute>@<stage>`, key the group."""
    return metric_rows(
        (day, fairness_table(part, attributes, decline_bands, confidence))
        for (day,), part in cases.group_by("partition_date", maintain_order=True)
    )


def metric_rows(tables: Iterable[tuple[object, pl.DataFrame]]) -> pl.DataFrame:
    """`decision_metrics` rows from each day's `fairness_table`: day by day, metric by metric
    (`METRIC_COLUMNS`' order), the table's rows that have the metric.

    The days' tables are stacked once and each metric picked from the stack: a filter per day
    and metric was most of the fairness step's cost over a run of 90 days.
    """
    days: list[object] = []
    frames: list[pl.DataFrame] = []
    for day, table in tables:
        days.append(day)
        frames.append(table)
    if not frames:
        return pl.DataFrame(schema=METRIC_SCHEMA)
    day_of_row = np.repeat(np.arange(len(frames)), [f.height for f in frames])
    stacked = pl.concat(frames).with_columns(
        pl.Series("partition_date", days, dtype=pl.Date).gather(day_of_row),
        pl.Series("__day", day_of_row),
    )
    parts = [
        stacked.filter(pl.col(column).is_not_null()).select(
            "__day",
            pl.lit(order).alias("__metric"),
            "partition_date",
            pl.lit(metric).alias("metric"),
            pl.format("{}@{}", "attribute", "stage").alias("dimension"),
            pl.col("group").alias("key"),
            pl.col(column).cast(pl.Float64).alias("value"),
        )
        for order, (metric, column) in enumerate(METRIC_COLUMNS.items())
    ]
    ordered = pl.concat(parts).sort("__day", "__metric", maintain_order=True)
    return ordered.drop("__day", "__metric").cast(METRIC_SCHEMA)


def review_effect(table: pl.DataFrame) -> pl.DataFrame:
    """Per attribute and group: AIR at the policy route, after human review, and the change.

    A negative `review_change` means review widened the gap to the reference group.
    """
    air = table.filter(pl.col("stage").is_in(["policy_route", "human_verdict"]))
    if air.height == 0:
        return pl.DataFrame(
            schema={
                "attribute": pl.String,
                "group": pl.String,
                "policy_route": pl.Float64,
                "human_verdict": pl.Float64,
                "review_change": pl.Float64,
            }
        )
    wide = air.pivot(on="stage", index=["attribute", "group"], values="air")
    for stage in ("policy_route", "human_verdict"):
        if stage not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(stage))
    return wide.select(
        "attribute",
        "group",
        "policy_route",
        "human_verdict",
        (pl.col("human_verdict") - pl.col("policy_route")).alias("review_change"),
    ).sort("attribute", "group")


@dataclass(frozen=True)
class FairnessFindings:
    """The two fairness checks of a run."""

    adverse_impact: Finding
    score_gap: Finding

    def all(self) -> list[Finding]:
        return [self.adverse_impact, self.score_gap]


def fairness_findings(table: pl.DataFrame, limits: FairnessLimits) -> FairnessFindings:
    """Judge a `fairness_table` against the domain's warn and block thresholds.

    `fairness_adverse_impact`: ERROR when a group's AIR interval lies wholly below
    `block_ratio` at any stage; WARN when a group of at least `min_group_cases` has an AIR
    below `warn_ratio`. `fairness_score_gap`: WARN when |SMD| exceeds `warn_smd` for a group of
    at least `min_group_cases` at the model stage.
    """
    columns = ["stage", "attribute", "group", "reference", "n", "approval_rate", "air"]
    candidates = table.filter(pl.col("group") != pl.col("reference"))
    blocked = candidates.filter(pl.col("air_high") < limits.block_ratio)
    warned = candidates.filter(
        (pl.col("n") >= limits.min_group_cases) & (pl.col("air") < limits.warn_ratio)
    )
    flagged = pl.concat([blocked, warned]).unique(["stage", "attribute", "group"], keep="first")
    details = flagged.select(*columns, "air_low", "air_high").sort("attribute", "group", "stage")
    if table.height == 0:
        impact = Finding(
            "fairness_adverse_impact",
            True,
            WARN,
            "No protected attribute declared or no decided case: nothing measured.",
            details,
            judged=False,
        )
    elif flagged.height == 0:
        worst = candidates.sort("air", nulls_last=True).head(1)
        low = f" (lowest AIR {worst['air'][0]:.2f})" if worst.height and worst["air"][0] else ""
        impact = Finding(
            "fairness_adverse_impact",
            True,
            WARN,
            f"Every group's approval rate is at least {limits.warn_ratio:.0%} of its reference "
            f"group's at every stage{low}.",
            details,
        )
    else:
        severity = ERROR if blocked.height else WARN
        first = details.row(0, named=True)
        impact = Finding(
            "fairness_adverse_impact",
            False,
            severity,
            f"{flagged.height} group-stage(s) below the four-fifths rule; e.g. "
            f"{first['attribute']}={first['group']} at {first['stage']}: AIR {first['air']:.2f} "
            f"({first['air_low']:.2f}-{first['air_high']:.2f}) against {first['reference']}"
            + (
                f"; {blocked.height} with the whole interval below {limits.block_ratio}"
                if blocked.height
                else ""
            )
            + ".",
            details,
        )
    gaps = candidates.filter(
        (pl.col("stage") == "model_band")
        & (pl.col("n") >= limits.min_group_cases)
        & (pl.col("smd").abs() > limits.warn_smd)
    ).select("attribute", "group", "reference", "n", "smd")
    largest = max((abs(v) for v in gaps["smd"].to_list()), default=0.0)
    score_gap = Finding(
        "fairness_score_gap",
        gaps.height == 0,
        WARN,
        (
            f"No group's mean PD differs from its reference by more than {limits.warn_smd} SD."
            if gaps.height == 0
            else f"{gaps.height} group(s) scored differently from their reference by more than "
            f"{limits.warn_smd} SD (largest |SMD| {largest:.2f})."
        ),
        gaps,
        judged=gaps.height > 0 or (candidates["stage"] == "model_band").any(),
    )
    return FairnessFindings(impact, score_gap)

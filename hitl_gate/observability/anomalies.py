"""Anomaly detection over decision data: pure functions from Polars frames to findings.

Every detector compares each day of the run with a trailing baseline of earlier days (or, for
people, with fixed floors) and returns a `Finding` whose summary says what was compared and
the numbers, so an alert is actionable without opening a notebook. Thresholds account for
sampling noise: at a hundred cases a day a 5-point swing in a rate is noise, not news.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import cast

import numpy as np
import polars as pl

WARN, ERROR = "WARN", "ERROR"


@dataclass(frozen=True)
class Thresholds:
    """When a detector fires; defaults suit a daily batch of about a hundred cases or more."""

    baseline_days: int = 14  # trailing window compared with each day
    min_baseline_days: int = 3  # fewer days of history: the day is not judged
    rate_min_shift: float = 0.10  # absolute shift of a share that matters...
    rate_error_shift: float = 0.25  # ...and the one that is an error
    rate_z: float = 3.0  # and it must be beyond sampling noise (binomial z)
    override_min_shift: float = 0.15  # override-rate rise over baseline
    override_min_cases: int = 20
    psi_bins: int = 10
    psi_warn: float = 0.10  # above the expected PSI of two samples of these sizes
    psi_error: float = 0.25
    volume_warn_ratio: float = 0.5  # day volume / trailing median
    volume_error_ratio: float = 0.2
    bias_min_cases: int = 20  # a reviewer judged on at least this many verdicts
    bias_min_seconds_per_case: float = 10.0
    bias_max_override_rate: float = 0.01
    sla_error_rate: float = 0.10  # share of exported cases past due


NOT_JUDGED = "not judged"


@dataclass(frozen=True)
class Finding:
    """The outcome of one detector: pass or fail, severity, explanation, per-item numbers.

    `judged` is False when the detector had nothing to compare (no day with enough history, no
    reviewer with enough verdicts, no exported case): it then neither passed nor failed, and
    says so (`state`), rather than reading as a green "passed" that claims something was seen.
    """

    check: str
    passed: bool
    severity: str  # WARN or ERROR: what a failure means
    summary: str
    details: pl.DataFrame
    judged: bool = True

    @property
    def state(self) -> str:
        """`passed`, `not judged` or `FAILED (<severity>)`, as people read it."""
        if not self.passed:
            return f"FAILED ({self.severity})"
        return "passed" if self.judged else NOT_JUDGED

    def describe(self) -> str:
        return f"{self.check}: {self.state}. {self.summary}"


def _finding(
    check: str, flagged: pl.DataFrame, summary: str, details: pl.DataFrame, *, judged: bool
) -> Finding:
    failed = flagged.height > 0
    severity = (
        ERROR
        if failed and "severity" in flagged.columns and (flagged["severity"] == ERROR).any()
        else WARN
    )
    return Finding(check, not failed, severity, summary, details, judged=judged or failed)


def _baseline_window(day: date, t: Thresholds) -> tuple[date, date]:
    return day - timedelta(days=t.baseline_days), day - timedelta(days=1)


def _judged_days(available: Sequence[date], days: Sequence[date], t: Thresholds) -> list[date]:
    """Days with enough history in `available` to be compared with a baseline."""
    have = set(available)
    judged = []
    for day in days:
        start, end = _baseline_window(day, t)
        if sum(1 for d in have if start <= d <= end) >= t.min_baseline_days:
            judged.append(day)
    return judged


def judged_windows(
    available: Sequence[date], days: Sequence[date], t: Thresholds
) -> list[tuple[date, date, date]]:
    """(day, baseline start, baseline end) of every day a detector judges: what a caller
    computing all comparisons at once (`checks_db.DriftSource.prepare`) needs up front."""
    return [(day, *_baseline_window(day, t)) for day in _judged_days(available, days, t)]


def value_counts(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Rows per day and non-null value of `column` (partition_date, value, n): what
    `proportion_shift_counts` judges, counted from rows in memory."""
    return (
        frame.filter(pl.col(column).is_not_null())
        .group_by("partition_date", column)
        .len("n")
        .rename({column: "value"})
    )


def proportion_shift_counts(
    counts: pl.DataFrame,
    column: str,
    days: Sequence[date],
    t: Thresholds,
    *,
    check: str,
    categories: Sequence[str] | None = None,
    upward_only: bool = False,
    min_shift: float | None = None,
    min_cases: int = 1,
) -> Finding:
    """Share of each value of `column` per day vs the trailing baseline's share.

    `counts` (partition_date, value, n): rows per day and non-null value of `column`, from
    rows in memory (`value_counts`) or a DuckDB `GROUP BY` over millions of cases. Fires when
    the absolute shift is at least `min_shift` AND beyond `rate_z` binomial standard errors of
    the day's size; ERROR at `rate_error_shift`.
    """
    min_shift = t.rate_min_shift if min_shift is None else min_shift
    values = sorted(categories or counts["value"].unique().to_list())
    per_day: dict[date, dict[object, int]] = {}
    for day, value, n in counts.select("partition_date", "value", "n").iter_rows():
        per_day.setdefault(day, {})[value] = per_day.get(day, {}).get(value, 0) + int(n)
    rows = []
    for day in _judged_days(list(per_day), days, t):
        start, end = _baseline_window(day, t)
        today = per_day.get(day, {})
        base: dict[object, int] = {}
        for d, part in per_day.items():
            if start <= d <= end:
                for value, n in part.items():
                    base[value] = base.get(value, 0) + n
        cases, base_cases = sum(today.values()), sum(base.values())
        if cases < max(min_cases, 1) or base_cases == 0:
            continue
        for value in values:
            p = today.get(value, 0) / cases
            p0 = base.get(value, 0) / base_cases
            se = math.sqrt(max(p0 * (1 - p0), 1e-9) / cases)
            rows.append(
                {"partition_date": day, "value": str(value), "cases": cases,
                 "share": p, "baseline_share": p0, "baseline_cases": base_cases,
                 "shift": p - p0, "z": (p - p0) / se}
            )  # fmt: skip
    details = pl.DataFrame(rows, schema=_SHIFT_SCHEMA)
    moved = pl.col("shift") if upward_only else pl.col("shift").abs()
    z = pl.col("z") if upward_only else pl.col("z").abs()
    flagged = details.filter((moved >= min_shift) & (z >= t.rate_z)).with_columns(
        pl.when(moved >= t.rate_error_shift)
        .then(pl.lit(ERROR))
        .otherwise(pl.lit(WARN))
        .alias("severity")
    )
    judged = details["partition_date"].n_unique()
    if flagged.height:
        worst = flagged.sort(pl.col("shift").abs(), descending=True).row(0, named=True)
        summary = (
            f"{column} share of '{worst['value']}' on {worst['partition_date']} was "
            f"{worst['share']:.1%} vs {worst['baseline_share']:.1%} over the previous "
            f"{t.baseline_days} days ({worst['shift']:+.1%}, z={worst['z']:.1f}, "
            f"{worst['cases']} cases); {flagged.height} day/value pairs beyond "
            f"{min_shift:.0%} and z {t.rate_z:g}, over {judged} days judged."
        )
    else:
        summary = _quiet_summary(column, judged, len(days), details, min_shift, t)
    details = flagged if flagged.height else details
    return _finding(check, flagged, summary, details, judged=judged > 0)


_SHIFT_SCHEMA = {
    "partition_date": pl.Date, "value": pl.String, "cases": pl.Int64, "share": pl.Float64,
    "baseline_share": pl.Float64, "baseline_cases": pl.Int64, "shift": pl.Float64,
    "z": pl.Float64,
}  # fmt: skip


def _quiet_summary(
    column: str, judged: int, days: int, details: pl.DataFrame, min_shift: float, t: Thresholds
) -> str:
    if judged == 0:
        return (
            f"{column}: no day had {t.min_baseline_days}+ days of history in the previous "
            f"{t.baseline_days}, so none was judged ({days} days in the run)."
        )
    largest = float(cast(float, details["shift"].abs().max()))
    return (
        f"{column}: largest daily shift {largest:.1%} against the trailing {t.baseline_days}-day "
        f"baseline, within {min_shift:.0%} or sampling noise (z {t.rate_z:g}); "
        f"{judged} days judged."
    )


def psi(baseline: pl.Series, current: pl.Series, bins: int = 10) -> tuple[float, int]:
    """Population stability index of `current` against `baseline`, and the bins used.

    Bins are the baseline's quantiles (ties merged); missing values form their own bin, so a
    sudden rise in missing data is drift too. Counts are smoothed by half a case per bin, so an
    empty bin in a small day does not dominate.
    """
    base = baseline.cast(pl.Float64)
    cur = current.cast(pl.Float64)
    present = base.drop_nulls()
    edges = psi_edges(
        [float(cast(float, present.quantile(q / bins, "linear"))) for q in range(1, bins)]
        if present.len()
        else []
    )

    def shares(values: pl.Series) -> list[int]:
        valid = values.drop_nulls().to_numpy()
        counts = [0] * (len(edges) + 2)
        index = np.searchsorted(np.asarray(edges), valid, side="right")
        for i, n in zip(*np.unique(index, return_counts=True), strict=True):
            counts[int(i)] += int(n)
        counts[-1] = values.null_count()
        return counts

    return psi_of_counts(shares(base), shares(cur))


def psi_edges(quantiles: Sequence[float]) -> list[float]:
    """The bin edges from the baseline's quantiles: distinct values, ascending."""
    return sorted(set(quantiles))


def psi_of_counts(b_counts: Sequence[int], c_counts: Sequence[int]) -> tuple[float, int]:
    """PSI and bins used from per-bin counts (bin i: values with i edges at or below them;
    the last bin: missing values), baseline first. Empty bins on both sides are dropped."""
    kept = [i for i, (x, y) in enumerate(zip(b_counts, c_counts, strict=True)) if x or y]
    b = [(b_counts[i] + 0.5) / (sum(b_counts) + 0.5 * len(kept)) for i in kept]
    c = [(c_counts[i] + 0.5) / (sum(c_counts) + 0.5 * len(kept)) for i in kept]
    used = len(kept)
    value = sum((y - x) * math.log(y / x) for x, y in zip(b, c, strict=True))
    return value, used


def distribution_drift(
    frame: pl.DataFrame, columns: Sequence[str], days: Sequence[date], t: Thresholds, *, check: str
) -> Finding:
    """PSI of each column per day vs the trailing baseline, judged above the noise floor.

    Two samples from one distribution still differ: PSI is then roughly chi-square with
    bins - 1 degrees of freedom, scaled by (1/n + 1/n0). The noise floor is its mean plus three
    standard deviations, and the thresholds apply above that floor.
    """

    # The day's rows and its baseline's, cut once for all the columns compared on that day in
    # turn (only the last day's are kept: a baseline can be many days of cases).
    cut: dict[tuple[date, date, date], tuple[pl.DataFrame, pl.DataFrame]] = {}

    def compare(day: date, start: date, end: date, column: str) -> DriftStats | None:
        if (day, start, end) not in cut:
            cut.clear()
            cut[(day, start, end)] = (
                frame.filter(pl.col("partition_date") == day),
                frame.filter(pl.col("partition_date").is_between(start, end)),
            )
        today, base = cut[(day, start, end)]
        if today.height == 0 or base.height == 0:
            return None
        value, used = psi(base[column], today[column], t.psi_bins)
        return DriftStats(value, used, today.height, base.height)

    available = frame["partition_date"].unique().to_list()
    return drift_finding(available, compare, columns, days, t, check=check)


@dataclass(frozen=True)
class DriftStats:
    """One column's PSI on one day: the value, bins used, and the cases on either side."""

    psi: float
    bins: int
    cases: int
    baseline_cases: int


def drift_finding(
    available: Sequence[date],
    compare: Callable[[date, date, date, str], DriftStats | None],
    columns: Sequence[str],
    days: Sequence[date],
    t: Thresholds,
    *,
    check: str,
) -> Finding:
    """`distribution_drift`'s judgement, given `compare(day, baseline start, end, column)`
    (None: nothing to compare that day) and the days that have data (`available`)."""
    rows = []
    for day in _judged_days(available, days, t):
        start, end = _baseline_window(day, t)
        for column in columns:
            stats = compare(day, start, end, column)
            if stats is None:
                break
            df = max(stats.bins - 1, 1)
            floor = (df + 3 * math.sqrt(2 * df)) * (1 / stats.cases + 1 / stats.baseline_cases)
            rows.append(
                {"partition_date": day, "feature": column, "psi": stats.psi,
                 "noise_floor": floor, "cases": stats.cases,
                 "baseline_cases": stats.baseline_cases}
            )  # fmt: skip
    details = pl.DataFrame(rows, schema=_PSI_SCHEMA)
    excess = pl.col("psi") - pl.col("noise_floor")
    flagged = details.filter(excess >= t.psi_warn).with_columns(
        pl.when(excess >= t.psi_error).then(pl.lit(ERROR)).otherwise(pl.lit(WARN)).alias("severity")
    )
    judged = details["partition_date"].n_unique()
    if flagged.height:
        worst = flagged.sort("psi", descending=True).row(0, named=True)
        features = ", ".join(sorted(set(flagged["feature"].to_list())))
        summary = (
            f"PSI of {worst['feature']} on {worst['partition_date']} was {worst['psi']:.3f} vs "
            f"the previous {t.baseline_days} days (noise floor {worst['noise_floor']:.3f}, warn "
            f"{t.psi_warn:g} / error {t.psi_error:g} above it; {worst['cases']} vs "
            f"{worst['baseline_cases']} cases). Drifted: {features}."
        )
    elif judged:
        worst = details.sort(pl.col("psi") - pl.col("noise_floor"), descending=True).row(
            0, named=True
        )
        summary = (
            f"Largest PSI {worst['psi']:.3f} ({worst['feature']}, {worst['partition_date']}) "
            f"with noise floor {worst['noise_floor']:.3f}: below warn {t.psi_warn:g} above the "
            f"floor; {len(columns)} columns over {judged} days judged."
        )
    else:
        summary = f"No day had {t.min_baseline_days}+ days of history: none judged."
    details = flagged if flagged.height else details
    return _finding(check, flagged, summary, details, judged=judged > 0)


_PSI_SCHEMA = {
    "partition_date": pl.Date, "feature": pl.String, "psi": pl.Float64,
    "noise_floor": pl.Float64, "cases": pl.Int64, "baseline_cases": pl.Int64,
}  # fmt: skip


def volume_drop(daily: pl.DataFrame, days: Sequence[date], t: Thresholds) -> Finding:
    """Cases per day (`partition_date`, `cases`) vs the median of the trailing days."""
    available = daily["partition_date"].to_list()
    rows = []
    for day in _judged_days(available, days, t):
        start, end = _baseline_window(day, t)
        base = daily.filter(pl.col("partition_date").is_between(start, end))["cases"]
        today = daily.filter(pl.col("partition_date") == day)["cases"]
        n = int(today.sum()) if today.len() else 0
        median = float(cast(float, base.median()))
        rows.append(
            {"partition_date": day, "cases": n, "baseline_median": median,
             "ratio": n / median if median else 1.0}
        )  # fmt: skip
    details = pl.DataFrame(
        rows,
        schema={"partition_date": pl.Date, "cases": pl.Int64, "baseline_median": pl.Float64,
                "ratio": pl.Float64},
    )  # fmt: skip
    flagged = details.filter(pl.col("ratio") < t.volume_warn_ratio).with_columns(
        pl.when(pl.col("ratio") < t.volume_error_ratio)
        .then(pl.lit(ERROR))
        .otherwise(pl.lit(WARN))
        .alias("severity")
    )
    if flagged.height:
        worst = flagged.sort("ratio").row(0, named=True)
        summary = (
            f"{worst['cases']} cases on {worst['partition_date']} vs a median of "
            f"{worst['baseline_median']:g} over the previous {t.baseline_days} days "
            f"({worst['ratio']:.0%}; warn below {t.volume_warn_ratio:.0%}, error below "
            f"{t.volume_error_ratio:.0%})."
        )
    elif details.height:
        low = details.sort("ratio").row(0, named=True)
        summary = (
            f"Lowest day {low['partition_date']}: {low['cases']} cases, {low['ratio']:.0%} of "
            f"the trailing median {low['baseline_median']:g}; {details.height} days judged."
        )
    else:
        summary = f"No day had {t.min_baseline_days}+ days of history: none judged."
    details_shown = flagged if flagged.height else details
    return _finding("volume_drop", flagged, summary, details_shown, judged=details.height > 0)


def automation_bias(reviewed: pl.DataFrame, t: Thresholds) -> Finding:
    """Reviewers whose time per case or override rate is near zero (rubber-stamping).

    `reviewed` has one row per verdict: reviewer_id, override (bool), review_seconds_per_case.
    """
    stats = (
        reviewed.group_by("reviewer_id")
        .agg(
            pl.len().alias("verdicts"),
            pl.col("override").mean().alias("override_rate"),
            pl.col("review_seconds_per_case").median().alias("median_seconds_per_case"),
        )
        .sort("reviewer_id")
    )
    fast = pl.col("median_seconds_per_case") < t.bias_min_seconds_per_case
    agreeing = pl.col("override_rate") <= t.bias_max_override_rate
    enough = stats.filter(pl.col("verdicts") >= t.bias_min_cases)
    flagged = enough.filter(fast | agreeing)
    flagged = flagged.with_columns(
        pl.concat_str(
            pl.when(fast).then(pl.lit("near-zero review time ")).otherwise(pl.lit("")),
            pl.when(agreeing).then(pl.lit("never overrides")).otherwise(pl.lit("")),
        )
        .str.strip_chars()
        .alias("why"),
        pl.lit(WARN).alias("severity"),
    )
    if flagged.height:
        parts = [
            f"{r['reviewer_id']} ({r['verdicts']} verdicts, {r['median_seconds_per_case']:.1f} "
            f"s/case, override rate {r['override_rate']:.1%}: {r['why']})"
            for r in flagged.iter_rows(named=True)
        ]
        summary = (
            "Possible automation bias: " + "; ".join(parts) + f". Floors: "
            f"{t.bias_min_seconds_per_case:g} s per case, override rate above "
            f"{t.bias_max_override_rate:.0%}, judged from {t.bias_min_cases} verdicts."
        )
    elif enough.height:
        summary = (
            f"{stats.height} reviewers, {enough.height} with {t.bias_min_cases}+ verdicts; none "
            f"under {t.bias_min_seconds_per_case:g} s per case or with override rate "
            f"<= {t.bias_max_override_rate:.0%}."
        )
    else:
        summary = (
            f"{stats.height} reviewer(s) in the run, none with the {t.bias_min_cases} verdicts "
            "needed to judge their pace: nothing judged."
        )
    details = flagged if flagged.height else stats
    return _finding("automation_bias", flagged, summary, details, judged=enough.height > 0)


def sla_breaches(exported: pl.DataFrame, as_of: datetime, t: Thresholds) -> Finding:
    """Exported cases answered after their due time, or still open past it at `as_of`.

    `exported` has batch_queue, due_at, verdict_received_at (null while open), case_id.
    """
    due = pl.col("due_at")
    now = pl.lit(as_of, dtype=exported.schema["due_at"])
    frame = exported.with_columns(
        (pl.coalesce(pl.col("verdict_received_at"), now) > due).fill_null(False).alias("breached"),
        pl.col("verdict_received_at").is_null().alias("open"),
    )
    per_queue = (
        frame.group_by("batch_queue")
        .agg(
            pl.len().alias("cases"),
            pl.col("breached").sum().alias("breached"),
            (pl.col("breached") & pl.col("open")).sum().alias("open_past_due"),
            pl.col("breached").mean().alias("breach_rate"),
        )
        .sort("batch_queue")
    )
    breached = int(per_queue["breached"].sum() or 0)
    rate = breached / frame.height if frame.height else 0.0
    flagged = per_queue.filter(pl.col("breached") > 0).with_columns(
        pl.lit(ERROR if rate >= t.sla_error_rate else WARN).alias("severity")
    )
    summary = (
        f"{breached} of {frame.height} exported cases ({rate:.1%}) breached their review SLA "
        f"as of {as_of:%Y-%m-%d %H:%M} UTC ({int(per_queue['open_past_due'].sum() or 0)} still "
        f"open past due); error at {t.sla_error_rate:.0%}."
        if frame.height
        else "No case of the run was exported for review: no SLA to judge."
    )
    return _finding("sla_breaches", flagged, summary, per_queue, judged=frame.height > 0)


def detect_all(
    cases: pl.DataFrame,
    features: pl.DataFrame,
    *,
    days: Sequence[date],
    as_of: datetime,
    feature_columns: Sequence[str],
    t: Thresholds,
) -> list[Finding]:
    """Every detector over one run's `days`.

    `cases`: `case_stage_times` rows with review facts (`with_review_facts`) for the days and
    their baseline window; `features`: partition_date plus the model's feature columns.
    """
    in_run = pl.col("partition_date").is_in(list(days))
    reviewed = cases.filter(pl.col("override").is_not_null()).with_columns(
        pl.when(pl.col("override"))
        .then(pl.lit("override"))
        .otherwise(pl.lit("agree"))
        .alias("override_outcome")
    )
    executed = cases.filter(pl.col("executed_action").is_not_null())
    daily = cases.group_by("partition_date").len("cases")
    return [
        proportion_shift_counts(
            value_counts(cases, "route"), "route", days, t, check="route_mix_shift"
        ),
        proportion_shift_counts(
            value_counts(executed, "executed_action"), "executed_action", days, t,
            check="approval_rate_shift", categories=["approve"],
        ),
        proportion_shift_counts(
            value_counts(reviewed, "override_outcome"), "override_outcome", days, t,
            check="override_rate_spike",
            categories=["override"], upward_only=True, min_shift=t.override_min_shift,
            min_cases=t.override_min_cases,
        ),
        distribution_drift(cases, ["pd"], days, t, check="score_drift_psi"),
        distribution_drift(features, feature_columns, days, t, check="feature_drift_psi"),
        volume_drop(daily, days, t),
        automation_bias(reviewed.filter(in_run), t),
        sla_breaches(cases.filter(in_run & pl.col("exported_at").is_not_null()), as_of, t),
    ]  # fmt: skip

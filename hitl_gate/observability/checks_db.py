"""The anomaly checks of `decision_metrics` fed by DuckDB aggregates, not by a frame per case.

`anomalies.detect_all` takes the window's cases (the run days and their trailing baseline) as
one Polars frame; here DuckDB hands each detector only what it judges: cases per day and value
for the share shifts, cases per day for the volume, and for the PSI checks the baseline's
quantile edges (order statistics) and the per-bin counts. The rows the people checks read,
verdicts and exported cases of the run days, are bounded by the review capacity, not by the
day's size, so they come back as rows. Findings are identical to `detect_all`'s (the unit
tests compare both on the same days), because the judging code is the same functions
(`proportion_shift_counts`, `drift_finding`, `psi_of_counts`, `volume_drop`,
`automation_bias`, `sla_breaches`); only the counting moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.observability.anomalies import (
    DriftStats,
    Finding,
    Thresholds,
    automation_bias,
    drift_finding,
    proportion_shift_counts,
    psi_edges,
    psi_of_counts,
    sla_breaches,
    volume_drop,
)
from hitl_gate.observability.metrics_db import (
    METRICS_MEMORY_LIMIT,
    load_facts,
    memory_limit,
)

CHECK_FACTS = "check_facts"  # the window's cases with their review facts
FEATURES = "check_features"  # the window's model features (a view over the Parquet files)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DriftSource:
    """PSI inputs of one relation's columns, per day against a baseline range, by SQL."""

    def __init__(self, con: duckdb.DuckDBPyConnection, relation: str, bins: int) -> None:
        self.con, self.relation, self.bins = con, relation, bins

    def days(self) -> list[date]:
        rows = self.con.execute(f"SELECT DISTINCT partition_date FROM {self.relation}").fetchall()
        return [r[0] for r in rows]

    def compare(self, day: date, start: date, end: date, column: str) -> DriftStats | None:
        """`anomalies.psi` of `column` on `day` against `start`..`end`, counted by DuckDB."""
        today_where, today_args = "partition_date = ?", [day]
        base_where, base_args = "partition_date BETWEEN ? AND ?", [start, end]
        cases = self._scalar(
            f"SELECT count(*) FROM {self.relation} WHERE {today_where}", today_args
        )
        base_cases = self._scalar(
            f"SELECT count(*) FROM {self.relation} WHERE {base_where}", base_args
        )
        if cases == 0 or base_cases == 0:
            return None
        value = f"{_quote(column)}::DOUBLE"
        edges = psi_edges(self._linear_quantiles(value, base_where, base_args))
        b_counts = self._bin_counts(value, edges, base_where, base_args)
        c_counts = self._bin_counts(value, edges, today_where, today_args)
        psi, used = psi_of_counts(b_counts, c_counts)
        return DriftStats(psi, used, cases, base_cases)

    def _scalar(self, sql: str, params: list) -> int:
        return int(self.con.execute(sql, params).fetchall()[0][0])

    def _linear_quantiles(self, value: str, where: str, params: list) -> list[float]:
        """Polars' `linear` quantiles q/bins (q = 1..bins-1) of the non-null values.

        The value at index f = (n - 1) q interpolates the sorted values at floor(f) and
        ceil(f) as Polars does (`lo + (hi - lo) * (f - floor(f))`); DuckDB only sorts and picks
        the order statistics, so no value leaves the database but those few.
        """
        present = f"{where} AND {value} IS NOT NULL"
        n = self._scalar(f"SELECT count(*) FROM {self.relation} WHERE {present}", params)
        if n == 0:
            return []
        wanted = []
        for q in range(1, self.bins):
            f = (n - 1) * (q / self.bins)
            wanted.append((f, math.floor(f), math.ceil(f)))
        positions = sorted({p + 1 for _, lo, hi in wanted for p in (lo, hi)})
        rows = self.con.execute(
            f"SELECT rn, v FROM (SELECT v, row_number() OVER (ORDER BY v) AS rn FROM "
            f"(SELECT {value} AS v FROM {self.relation} WHERE {present})) "
            "WHERE rn IN (SELECT unnest(?::BIGINT[]))",
            [*params, positions],
        ).fetchall()
        at = {int(rn): float(v) for rn, v in rows}
        return [at[lo + 1] + (at[hi + 1] - at[lo + 1]) * (f - lo) for f, lo, hi in wanted]

    def _bin_counts(self, value: str, edges: list[float], where: str, params: list) -> list[int]:
        """Cases per bin: i edges at or below the value (numpy's searchsorted, right), nulls
        last."""
        index = " + ".join(f"({value} >= '{e!r}'::DOUBLE)::INTEGER" for e in edges) or "0"
        rows = self.con.execute(
            f"SELECT CASE WHEN {value} IS NULL THEN {len(edges) + 1} ELSE {index} END AS bin, "
            f"count(*) FROM {self.relation} WHERE {where} GROUP BY ALL",
            params,
        ).fetchall()
        counts = [0] * (len(edges) + 2)
        for b, n in rows:
            counts[int(b)] += int(n)
        return counts


def _shift_counts(con: duckdb.DuckDBPyConnection, value: str, where: str) -> pl.DataFrame:
    return con.sql(
        f"SELECT partition_date, {value} AS value, count(*) AS n FROM {CHECK_FACTS} "
        f"WHERE {where} GROUP BY ALL"
    ).pl()


def feature_relation(
    con: duckdb.DuckDBPyConnection, files: dict[date, Path], columns: Sequence[str]
) -> str:
    """A temporary view of the model features of each day's Parquet file (none: empty)."""
    kept = ", ".join(f"{_quote(c)}::DOUBLE AS {_quote(c)}" for c in columns)
    parts = [
        f"SELECT DATE '{day.isoformat()}' AS partition_date, {kept} "
        f"FROM read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
        for day, path in sorted(files.items())
    ]
    if not parts:
        nulls = ", ".join(f"NULL::DOUBLE AS {_quote(c)}" for c in columns)
        parts = [f"SELECT NULL::DATE AS partition_date, {nulls} WHERE false"]
    con.execute(f"CREATE OR REPLACE TEMP VIEW {FEATURES} AS " + " UNION ALL ".join(parts))
    return FEATURES


def detect_all_db(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    window: Sequence[date],
    *,
    days: Sequence[date],
    as_of: datetime,
    decline_bands: Sequence[str],
    feature_files: dict[date, Path],
    feature_columns: Sequence[str],
    t: Thresholds,
    limit: str | None = METRICS_MEMORY_LIMIT,
) -> list[Finding]:
    """`anomalies.detect_all` for the run's `days`, counted in DuckDB on `con`.

    `window` is every day from the baseline's first to the run's last; `feature_files` the
    Feast offline file of each of its days that has one (read by a second, in-memory DuckDB
    connection: the audit connection may read only the warehouse).
    """
    with memory_limit(con, limit):
        load_facts(con, domain, window, decline_bands, table=CHECK_FACTS)
        try:
            findings = _detect(con, days, as_of, t)
            score = drift_finding(
                *_drift(DriftSource(con, CHECK_FACTS, t.psi_bins)), ["pd"], days, t,
                check="score_drift_psi",
            )  # fmt: skip
        finally:
            con.execute(f"DROP TABLE IF EXISTS {CHECK_FACTS}")
    reader = duckdb.connect()
    try:
        if limit is not None:
            reader.execute(f"SET memory_limit = '{limit}'")
        source = DriftSource(
            reader, feature_relation(reader, feature_files, feature_columns), t.psi_bins
        )
        feature = drift_finding(
            *_drift(source), feature_columns, days, t, check="feature_drift_psi"
        )
    finally:
        reader.close()
    route, approval, override, volume, bias, sla = findings
    return [route, approval, override, score, feature, volume, bias, sla]


def _drift(source: DriftSource) -> tuple[list[date], Callable[..., DriftStats | None]]:
    return source.days(), source.compare


def _detect(
    con: duckdb.DuckDBPyConnection, days: Sequence[date], as_of: datetime, t: Thresholds
) -> list[Finding]:
    in_run = "partition_date IN (SELECT unnest($days::DATE[]))"
    daily = con.sql(
        f"SELECT partition_date, count(*) AS cases FROM {CHECK_FACTS} GROUP BY ALL"
    ).pl()
    reviewed = con.sql(
        f"SELECT reviewer_id, override, review_seconds_per_case FROM {CHECK_FACTS} "
        f"WHERE override IS NOT NULL AND {in_run} ORDER BY partition_date, case_id",
        params={"days": list(days)},
    ).pl()
    exported = con.sql(
        f"SELECT case_id, batch_queue, due_at, verdict_received_at FROM {CHECK_FACTS} "
        f"WHERE exported_at IS NOT NULL AND {in_run} ORDER BY partition_date, case_id",
        params={"days": list(days)},
    ).pl()
    outcome = "CASE WHEN override THEN 'override' ELSE 'agree' END"
    return [
        proportion_shift_counts(
            _shift_counts(con, "route", "route IS NOT NULL"), "route", days, t,
            check="route_mix_shift",
        ),
        proportion_shift_counts(
            _shift_counts(con, "executed_action", "executed_action IS NOT NULL"),
            "executed_action", days, t, check="approval_rate_shift", categories=["approve"],
        ),
        proportion_shift_counts(
            _shift_counts(con, outcome, "override IS NOT NULL"), "override_outcome", days, t,
            check="override_rate_spike", categories=["override"], upward_only=True,
            min_shift=t.override_min_shift, min_cases=t.override_min_cases,
        ),
        volume_drop(daily, days, t),
        automation_bias(reviewed, t),
        sla_breaches(exported, as_of, t),
    ]  # fmt: skip


def window_days(days: Sequence[date], t: Thresholds) -> list[date]:
    """Every day from the first baseline day of the run's earliest day to its last day."""
    start, last = min(days) - timedelta(days=t.baseline_days), max(days)
    return [start + timedelta(days=i) for i in range((last - start).days + 1)]

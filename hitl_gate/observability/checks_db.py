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
import tempfile
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from hitl_gate.core.quiet_duckdb import quiet_connect
from hitl_gate.observability.anomalies import (
    DriftStats,
    Finding,
    Thresholds,
    automation_bias,
    drift_finding,
    judged_windows,
    proportion_shift_counts,
    psi_edges,
    psi_of_counts,
    sla_breaches,
    volume_drop,
)
from hitl_gate.observability.facts import CHECK_FACTS, CaseFacts, case_facts
from hitl_gate.observability.facts import sql_identifier as _quote
from hitl_gate.observability.metrics_db import METRICS_MEMORY_LIMIT, memory_limit

FEATURES = "check_features"  # the window's model features (a view over the Parquet files)


Window = tuple[date, date, date]  # (day judged, baseline start, baseline end)


# Values (rows x columns) the drift queries of one group of columns read at most: a small
# day's columns are counted together, a large day's one column per query as before.
DRIFT_VALUES_PER_QUERY = 2_000_000


class DriftSource:
    """PSI inputs of one relation's columns, per day against its baseline range, by SQL.

    Every judged day of a column is computed at once (`prepare`): one query counts the rows
    per day, one sorts each day's baseline values (the relation joined to the windows) and
    keeps only the order statistics the bin edges need, one counts every day's and baseline's
    values per bin. So a run of many days costs a few queries per column, not a handful per
    day and column (a run of 90 days re-read every feature file some 5,000 times that way).
    Columns are taken together, as many as keep a query's values (the relation's rows times
    the columns) within `values_per_query`: a day's run of a few hundred cases judges its
    dozen features in three queries, not three per feature (each DuckDB query costs some
    milliseconds to plan, whatever its size), while a day of millions still sorts one
    column's values at a time.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        relation: str,
        bins: int,
        values_per_query: int = DRIFT_VALUES_PER_QUERY,
    ) -> None:
        self.con, self.relation, self.bins = con, relation, bins
        self.values_per_query = values_per_query
        self._per_day: dict[date, int] | None = None
        self._stats: dict[tuple[date, str], DriftStats | None] = {}

    def days(self) -> list[date]:
        return list(self._rows_per_day())

    def prepare(self, windows: Sequence[Window], columns: Sequence[str]) -> None:
        """Compute `compare` for every window and column (the windows' baselines end before
        their day: `anomalies.judged_windows`)."""
        per_day = self._rows_per_day()
        sized = []
        for day, start, end in windows:
            base = sum(n for d, n in per_day.items() if start <= d <= end)
            if per_day.get(day, 0) == 0 or base == 0:
                self._stats.update({(day, c): None for c in columns})
            else:
                sized.append((day, start, end, per_day[day], base))
        if not sized:
            return
        rows = max(sum(per_day.values()), 1)
        size = max(1, self.values_per_query // rows)
        self.con.register(_WINDOWS, _window_table(sized))
        try:
            for first in range(0, len(columns), size):
                self._prepare_columns(sized, list(columns[first : first + size]))
        finally:
            self.con.unregister(_WINDOWS)

    def compare(self, day: date, start: date, end: date, column: str) -> DriftStats | None:
        """`anomalies.psi` of `column` on `day` against `start`..`end`, counted by DuckDB."""
        if (day, column) not in self._stats:
            self.prepare([(day, start, end)], [column])
        return self._stats[(day, column)]

    def _rows_per_day(self) -> dict[date, int]:
        if self._per_day is None:
            rows = self.con.execute(
                f"SELECT partition_date, count(*) FROM {self.relation} GROUP BY ALL"
            ).fetchall()
            self._per_day = {d: int(n) for d, n in rows if d is not None}
        return self._per_day

    def _sides(self, columns: Sequence[str], today: bool = True) -> str:
        """Each window's baseline rows (`today` false) and, unless `today=False`, its day's
        rows (`today` true): a row per row and column, the column's position in `columns` as
        `col` and its value as `v` (NULLs kept: they count as missing).

        A window is joined as its list of days, on equal dates: DuckDB hashes that join, where
        `BETWEEN start AND stop` made it a range join (the drift queries took 1.45x the CPU).
        """
        positions = ", ".join(str(i) for i in range(len(columns)))
        values = ", ".join(f"r.{_quote(c)}::DOUBLE" for c in columns)
        pick = f"unnest([{positions}]) AS col, unnest([{values}]) AS v"
        base = (
            f"SELECT w.day, false AS today, {pick} FROM (SELECT day, unnest("
            f"generate_series(start, stop, INTERVAL 1 DAY))::DATE AS on_day FROM {_WINDOWS}) w "
            f"JOIN {self.relation} r ON r.partition_date = w.on_day"
        )
        if not today:
            return base
        return (
            f"{base} UNION ALL SELECT w.day, true AS today, {pick} FROM {_WINDOWS} w "
            f"JOIN {self.relation} r ON r.partition_date = w.day"
        )

    def _prepare_columns(
        self, sized: list[tuple[date, date, date, int, int]], columns: list[str]
    ) -> None:
        present = {
            (d, int(c)): int(n)
            for d, c, n in self.con.execute(
                f"SELECT day, col, count(v) FROM ({self._sides(columns, today=False)}) GROUP BY ALL"
            ).fetchall()
        }
        wanted = {
            (day, c): present.get((day, c), 0) for day, *_ in sized for c in range(len(columns))
        }
        edges = self._edges(columns, wanted)
        counts = self._bin_counts(columns, edges)
        for day, _, _, cases, base_cases in sized:
            for c, column in enumerate(columns):
                size = len(edges[day, c]) + 2
                psi, used = psi_of_counts(
                    counts.get((day, c, False), [0] * size),
                    counts.get((day, c, True), [0] * size),
                )
                self._stats[(day, column)] = DriftStats(psi, used, cases, base_cases)

    def _edges(
        self, columns: Sequence[str], present: dict[tuple[date, int], int]
    ) -> dict[tuple[date, int], list[float]]:
        """Per day and column, the PSI edges from Polars' `linear` quantiles q/bins
        (q = 1..bins-1) of its baseline's non-null values.

        The value at index f = (n - 1) q interpolates the sorted values at floor(f) and
        ceil(f) as Polars does (`lo + (hi - lo) * (f - floor(f))`); DuckDB only sorts and picks
        the order statistics, so no value leaves the database but those few.
        """
        wanted: dict[tuple[date, int], list[tuple[float, int, int]]] = {}
        for key, n in present.items():
            if n:
                wanted[key] = [
                    (f, math.floor(f), math.ceil(f))
                    for f in ((n - 1) * (q / self.bins) for q in range(1, self.bins))
                ]
        edges: dict[tuple[date, int], list[float]] = {key: [] for key in present}
        if not wanted:
            return edges
        picks = pl.DataFrame(
            {
                "day": [k[0] for k, w in wanted.items() for _, lo, hi in w for _ in (lo, hi)],
                "col": [k[1] for k, w in wanted.items() for _, lo, hi in w for _ in (lo, hi)],
                "pos": [p + 1 for w in wanted.values() for _, lo, hi in w for p in (lo, hi)],
            },
            schema={"day": pl.Date, "col": pl.Int32, "pos": pl.Int64},
        ).to_arrow()
        self.con.register(_PICKS, picks)
        try:
            rows = self.con.execute(
                f"SELECT day, col, rn, v FROM (SELECT day, col, v, row_number() OVER ("
                f"PARTITION BY day, col ORDER BY v) AS rn FROM "
                f"({self._sides(columns, today=False)}) WHERE v IS NOT NULL) s "
                f"SEMI JOIN {_PICKS} p ON p.day = s.day AND p.col = s.col AND p.pos = s.rn"
            ).fetchall()
        finally:
            self.con.unregister(_PICKS)
        at = {(d, int(c), int(rn)): float(v) for d, c, rn, v in rows}
        for (day, c), w in wanted.items():
            edges[day, c] = psi_edges(
                [
                    at[day, c, lo + 1] + (at[day, c, hi + 1] - at[day, c, lo + 1]) * (f - lo)
                    for f, lo, hi in w
                ]
            )
        return edges

    def _bin_counts(
        self, columns: Sequence[str], edges: dict[tuple[date, int], list[float]]
    ) -> dict[tuple[date, int, bool], list[int]]:
        """Per day, column and side (today or baseline): cases per bin, bin i holding the
        values with i edges at or below them (numpy's searchsorted, right), missing values
        last."""
        width = max((len(e) for e in edges.values()), default=0)
        table: dict[str, pl.Series] = {
            "day": pl.Series([k[0] for k in edges], dtype=pl.Date),
            "col": pl.Series([k[1] for k in edges], dtype=pl.Int32),
        }
        for i in range(width):
            table[f"e{i}"] = pl.Series(
                [e[i] if i < len(e) else None for e in edges.values()], dtype=pl.Float64
            )
        index = " + ".join(f"coalesce((v >= e.e{i})::INTEGER, 0)" for i in range(width)) or "0"
        self.con.register(_EDGES, pl.DataFrame(table).to_arrow())
        try:
            rows = self.con.execute(
                f"SELECT j.day, j.col, today, CASE WHEN v IS NULL THEN -1 ELSE {index} END AS "
                f"bin, count(*) FROM ({self._sides(columns)}) j JOIN {_EDGES} e "
                "ON e.day = j.day AND e.col = j.col GROUP BY ALL"
            ).fetchall()
        finally:
            self.con.unregister(_EDGES)
        counts: dict[tuple[date, int, bool], list[int]] = {}
        for day, c, today, b, n in rows:
            size = len(edges[day, int(c)]) + 2
            side = counts.setdefault((day, int(c), bool(today)), [0] * size)
            side[size - 1 if b < 0 else int(b)] += int(n)
        return counts


_WINDOWS, _PICKS, _EDGES = "drift_windows", "drift_picks", "drift_edges"


def _window_table(sized: list[tuple[date, date, date, int, int]]) -> pa.Table:
    """The windows as an Arrow table (built by Polars: pyarrow would import pandas for dates)."""
    return pl.DataFrame(
        [s[:3] for s in sized], schema={"day": pl.Date, "start": pl.Date, "stop": pl.Date},
        orient="row",
    ).to_arrow()  # fmt: skip


def _shift_counts(con: duckdb.DuckDBPyConnection, value: str, where: str) -> pl.DataFrame:
    return con.sql(
        f"SELECT partition_date, {value} AS value, count(*) AS n FROM {CHECK_FACTS} "
        f"WHERE {where} GROUP BY ALL"
    ).pl()


def feature_relation(
    con: duckdb.DuckDBPyConnection, files: dict[date, Path], columns: Sequence[str]
) -> str:
    """A table of the model features of each day's Parquet file (none: empty), on `con`.

    Copied once, not a view: the drift queries read it several times per column, and a view
    would re-open every day's file each time (a 90-day run: 91 files per query).
    """
    kept = ", ".join(f"{_quote(c)}::DOUBLE AS {_quote(c)}" for c in columns)
    parts = [
        f"SELECT DATE '{day.isoformat()}' AS partition_date, {kept} "
        f"FROM read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
        for day, path in sorted(files.items())
    ]
    if not parts:
        nulls = ", ".join(f"NULL::DOUBLE AS {_quote(c)}" for c in columns)
        parts = [f"SELECT NULL::DATE AS partition_date, {nulls} WHERE false"]
    con.execute(f"CREATE OR REPLACE TABLE {FEATURES} AS " + " UNION ALL ".join(parts))
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
    facts: CaseFacts | None = None,
) -> list[Finding]:
    """`anomalies.detect_all` for the run's `days`, counted in DuckDB on `con`.

    `window` is every day from the baseline's first to the run's last; `feature_files` the
    Feast offline file of each of its days that has one (read by a second, in-memory DuckDB
    connection: the audit connection may read only the warehouse). `facts`: the run's facts
    already loaded on `con` for these days and window (None: read here).
    """

    def judge() -> tuple[list[Finding], Finding]:
        findings = _detect(con, days, as_of, t)
        score = _drift(DriftSource(con, CHECK_FACTS, t.psi_bins), ["pd"], days, t,
                       check="score_drift_psi")  # fmt: skip
        return findings, score

    with memory_limit(con, limit):
        if facts is None:
            with case_facts(con, domain, days, decline_bands, window=window):
                findings, score = judge()
        else:
            facts.require(domain, days, window)
            findings, score = judge()
    with tempfile.TemporaryDirectory(prefix="hitl-feature-drift-") as spill:
        # In memory, spilling beyond `limit` to `spill` (a 10M-case day's features > 1 GB).
        reader = quiet_connect(config={"temp_directory": spill})
        try:
            if limit is not None:
                reader.execute(f"SET memory_limit = '{limit}'")
            source = DriftSource(
                reader, feature_relation(reader, feature_files, feature_columns), t.psi_bins
            )
            feature = _drift(source, feature_columns, days, t, check="feature_drift_psi")
        finally:
            reader.close()
    route, approval, override, volume, bias, sla = findings
    return [route, approval, override, score, feature, volume, bias, sla]


def _drift(
    source: DriftSource, columns: Sequence[str], days: Sequence[date], t: Thresholds, *, check: str
) -> Finding:
    """`drift_finding` of `columns`, every judged day's statistics computed up front."""
    available = source.days()
    source.prepare(judged_windows(available, days, t), columns)
    return drift_finding(available, source.compare, columns, days, t, check=check)


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

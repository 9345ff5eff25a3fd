"""The cases one `decision_metrics` run judges, read once from `case_stage_times` into DuckDB.

Metrics (`metrics_db`), anomaly checks (`checks_db`) and fairness (`fairness_db`) read the same
cases: the run's days, and for the checks the trailing window before them. `case_stage_times`
is a view joining eight tables; each reading of it cost about a second of CPU per million
cases (three a run). The traces take their per-day counts from the facts (`day_rows`) but
still read the view for their lines: the sampled cases need the run ids, which cost more to
carry in the facts (5 ids a case: +1.7 CPU s at 1M against 0.4 s saved) than that one read.

`case_facts` reads the window once into the temporary table `case_facts`, with the review
facts of `metrics.with_review_facts`, and the consumers read two views of it:

- `metric_facts`: the run days' cases, a verdict file's seconds per case counted over the run
  days (what the metrics computed from the run's cases alone; fairness reads it too);
- `check_facts`: the window's cases, that count taken over the window (the checks' frame).

Both figures are kept because a verdict file may hold cases of a run day and of a baseline
day: each consumer sees exactly the values it saw when it read the view itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import duckdb

from hitl_gate.observability.metrics import APPROVE, DECLINE

TABLE = "case_facts"  # the window's cases with their review facts
METRIC_FACTS = "metric_facts"  # view: the run days' cases (metrics, fairness, traces)
CHECK_FACTS = "check_facts"  # view: the window's cases (anomaly checks)
# The `case_stage_times` columns metrics, checks and fairness read.
CASE_COLUMNS = (
    "partition_date", "case_id", "route", "route_rule_id", "review_queue", "risk_band",
    "policy_version", "pd", "ingested_at", "validated_at", "scored_at", "routed_at",
    "batch_queue", "exported_at", "due_at", "verdict", "reviewer_id", "verdict_file_sha256",
    "verdict_received_at", "executed_action", "decided_by", "executed_at",
)  # fmt: skip


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """`name` (a configured column name) as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def seconds_sql(start: str, end: str, unit_us: int = 1000) -> str:
    """Seconds from `start` to `end` as Polars computes them: the difference in microseconds
    truncated toward zero to whole `unit_us` (1000: `total_milliseconds() / 1000.0`;
    1000000: `total_seconds()`), then scaled in doubles. Polars divides by a literal as a
    multiplication by its reciprocal, so this multiplies by the same double."""
    whole = f"trunc((epoch_us({end}) - epoch_us({start})) / {unit_us})::BIGINT::DOUBLE"
    return f"({whole} * {unit_us / 1_000_000!r})" if unit_us != 1_000_000 else f"({whole})"


@dataclass(frozen=True)
class CaseFacts:
    """Facts loaded on a connection: whose, for which run days within which window."""

    domain: str
    days: tuple[date, ...]
    window: tuple[date, ...]
    run_rows: int
    # Rows per run day (days without a case absent): the view's counts, so the traces sample
    # by them without reading `case_stage_times` again.
    day_rows: dict[date, int]

    def require(self, domain: str, days: Sequence[date], window: Sequence[date] = ()) -> None:
        """Raise ValueError unless these facts are `domain`'s for `days` within `window`."""
        if domain != self.domain or tuple(days) != self.days or not set(window) <= set(self.window):
            raise ValueError(
                f"facts of {self.domain} {self.days} read for {domain} {list(days)}: load them "
                "for the run's days and window"
            )


def load_case_facts(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    decline_bands: Sequence[str],
    *,
    window: Sequence[date] = (),
) -> CaseFacts:
    """Build `case_facts` of `domain`'s `days` and `window` (empty: the days alone), and its
    views `metric_facts` and `check_facts`.

    The facts are `metrics.with_review_facts`'s: the proposed action of a review case, the
    override flag, seconds per case of its verdict file, reviewer response and time to
    decision, all in seconds. Cases per verdict file come from a `GROUP BY` joined back, not a
    window over the day (most cases have no file: one partition of the whole day).
    """
    days = tuple(days)
    window = tuple(sorted(set(window) | set(days)))
    bands = ", ".join(sql_literal(b) for b in decline_bands) or "NULL"
    reviewed = "c.verdict IS NOT NULL"
    proposed = (
        "CASE WHEN route <> 'human_review' THEN NULL "
        f"WHEN risk_band IN ({bands}) THEN '{DECLINE}' ELSE '{APPROVE}' END"
    )
    response = seconds_sql("exported_at", "verdict_received_at")
    columns = ", ".join(CASE_COLUMNS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {TABLE} AS
        WITH cases AS (
            SELECT {columns}, {proposed} AS proposed_action,
                partition_date IN (SELECT unnest($days::DATE[])) AS in_run
            FROM case_stage_times
            WHERE domain = $domain AND partition_date IN (SELECT unnest($window::DATE[]))
        ), per_file AS (  -- cases per verdict file (null: the cases without one, as Polars)
            SELECT verdict_file_sha256, count(*) AS n, count(*) FILTER (in_run) AS n_run
            FROM cases GROUP BY ALL
        )
        SELECT c.*,
            CASE WHEN {reviewed} THEN verdict <> proposed_action END AS override,
            CASE WHEN {reviewed} THEN {response} / f.n_run END AS run_seconds_per_case,
            CASE WHEN {reviewed} THEN {response} / f.n END AS window_seconds_per_case,
            {response} AS reviewer_response_s,
            {seconds_sql("ingested_at", "executed_at")} AS time_to_decision_s
        FROM cases c LEFT JOIN per_file f
            ON f.verdict_file_sha256 IS NOT DISTINCT FROM c.verdict_file_sha256
        """,
        {"domain": domain, "days": list(days), "window": list(window)},
    )
    drop = "EXCLUDE (in_run, run_seconds_per_case, window_seconds_per_case)"
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {METRIC_FACTS} AS SELECT * {drop}, "
        f"run_seconds_per_case AS review_seconds_per_case FROM {TABLE} WHERE in_run"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {CHECK_FACTS} AS SELECT * {drop}, "
        f"window_seconds_per_case AS review_seconds_per_case FROM {TABLE}"
    )
    day_rows = {
        day: int(n)
        for day, n in con.execute(
            f"SELECT partition_date, count(*) FROM {TABLE} WHERE in_run GROUP BY ALL"
        ).fetchall()
    }
    return CaseFacts(domain, days, window, sum(day_rows.values()), day_rows)


def drop_case_facts(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the facts and their views (nothing is left on the connection)."""
    con.execute(f"DROP VIEW IF EXISTS {METRIC_FACTS}")
    con.execute(f"DROP VIEW IF EXISTS {CHECK_FACTS}")
    con.execute(f"DROP TABLE IF EXISTS {TABLE}")


@contextmanager
def case_facts(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    decline_bands: Sequence[str],
    *,
    window: Sequence[date] = (),
) -> Iterator[CaseFacts]:
    """`load_case_facts` for the block, dropped after it even when a statement fails."""
    try:
        yield load_case_facts(con, domain, days, decline_bands, window=window)
    finally:
        drop_case_facts(con)

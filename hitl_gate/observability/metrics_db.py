"""`decision_metrics` aggregated inside DuckDB: the same long table, never a frame per case.

`metrics.decision_metrics` takes one Polars row per case; at ten million cases a day that frame
and its filtered copies took 13.8 GB. Here every metric is one `GROUP BY` over a temporary
table of the run days' cases (the `case_stage_times` columns metrics read plus the review
facts, built by DuckDB, which spills to disk under its memory limit), and only the aggregated
rows come back to Python: a few hundred per day whatever the day's size.

Results are identical to `metrics.decision_metrics`, value for value (the unit tests compare
the two on random days), which takes care in three places:
- quantiles: Polars' `nearest` is the sorted value at index `floor((n - 1) q + 0.5)` and
  DuckDB's `quantile_disc(v, q)` picks another one, so each group's sizes are counted first
  and `quantile_disc` is given the fraction that names that very index (`nearest_fractions`:
  half a place from either rounding), the index computed the same way in doubles;
- durations: Polars' `total_milliseconds` / `total_seconds` truncate toward zero, as integer
  division of the microsecond difference does here (`facts.seconds_sql`);
- shares and means: integer counts divided once, in doubles, as Polars' means are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import polars as pl

from hitl_gate.observability.facts import METRIC_FACTS, CaseFacts, case_facts
from hitl_gate.observability.facts import seconds_sql as _seconds
from hitl_gate.observability.facts import sql_identifier as _quote
from hitl_gate.observability.facts import sql_literal as _literal
from hitl_gate.observability.metrics import ALL, METRIC_SCHEMA, STAGES, qa_error_estimates
from hitl_gate.observability.outcomes_db import OUTCOMES, OutcomeFiles, metric_outcomes

FACTS = METRIC_FACTS  # the run days' cases with their review facts (`facts.case_facts`)
NONE_KEY = "(none)"
# DuckDB's memory limit while aggregating: beyond it, sorts and the facts table spill to disk.
METRICS_MEMORY_LIMIT = "1GB"


@contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str | None) -> Iterator[None]:
    """DuckDB's `memory_limit` set to `limit` for the block (None: unchanged), then restored."""
    if limit is None:
        yield
        return
    (previous,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    con.execute(f"SET memory_limit = {_literal(limit)}")  # SET takes no bound parameter
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = {_literal(str(previous))}")


def _key(column: str | None) -> str:
    return f"coalesce({_quote(column)}::VARCHAR, '{NONE_KEY}')" if column else f"'{ALL}'"


def _long(grouped: str, dimension: str, values: dict[str, str]) -> str:
    """The long rows (partition_date, metric, dimension, key, value) of `grouped`'s rows: one
    per metric in `values` (name: SQL of its value), unnested from one scan of `grouped`.

    One query per breakdown, not per metric: a query per metric computed the breakdown again
    for each (a distribution's sort three times, once for each of p50, p95 and max).
    """
    names = ", ".join(_literal(m) for m in values)
    figures = ", ".join(f"({v})::DOUBLE" for v in values.values())
    return (
        f"SELECT partition_date, unnest([{names}]) AS metric, {_literal(dimension)} AS dimension, "
        f"key, unnest([{figures}]) AS value FROM ({grouped})"
    )


def _group(where: str, key: str | None) -> tuple[str, str]:
    """(FROM ... WHERE ..., GROUP BY columns) of one breakdown of the facts."""
    return f"FROM {FACTS} WHERE {where}", "partition_date" + (f", {_quote(key)}" if key else "")


def _counts(where: str, dimension: str, column: str | None) -> list[str]:
    """Volume and share of cases per day, overall or per value of `column`."""
    source, groups = _group(where, column)
    grouped = (
        f"SELECT partition_date, {_key(column)} AS key, count(*) AS n {source} GROUP BY {groups}"
    )
    if column is None:
        return [_long(grouped, ALL, {"cases": "n"})]
    shared = f"SELECT *, n / sum(n) OVER (PARTITION BY partition_date) AS share FROM ({grouped})"
    return [_long(shared, dimension, {"cases": "n", "rate": "share"})]


def _overrides(dimension: str, column: str | None) -> list[str]:
    source, groups = _group("override IS NOT NULL", column)
    grouped = (
        f"SELECT partition_date, {_key(column)} AS key, count(*) AS reviewed, "
        f"count(*) FILTER (override) AS overrides {source} GROUP BY {groups}"
    )
    return [
        _long(
            grouped,
            dimension,
            {
                "reviewed": "reviewed",
                "overrides": "overrides",
                "override_rate": "overrides / reviewed",
            },
        )
    ]


def nearest_index_sql(n: str, q: float) -> str:
    """SQL: Polars' `nearest` index of quantile `q` among `n` sorted values, in doubles."""
    return f"floor(({n} - 1)::DOUBLE * {q!r} + 0.5)"


def nearest_fractions(counts: Iterable[int], quantiles: Iterable[float]) -> list[float]:
    """The fractions `quantile_disc` takes to pick Polars' `nearest` quantiles of groups of
    `counts` values: `(i + 0.5) / n` for the index `i = floor((n - 1) q + 0.5)`.

    DuckDB's discrete quantile of fraction `f` is the sorted value at `floor(n f)` (its
    `ceil(n f) - 1` where `n f` is whole): half a place from both sides of `i + 0.5`, so
    either reading picks index `i`, whatever rounding the division leaves. Computed here in
    the doubles `quantile_sql` computes them in, so its lookup finds each one exactly.
    """
    quantiles = tuple(quantiles)
    return sorted({(math.floor((n - 1) * q + 0.5) + 0.5) / n for n in counts for q in quantiles})


# Above this many fractions in one distribution (its groups of that many different sizes: a
# backfill of many large days), every group would select them all (1,000 fractions on a
# million values: 1.26 CPU s against 0.26 for one sort), so its groups are sorted instead.
MAX_SELECTED_FRACTIONS = 64


def quantile_sql(
    source: str,
    keys: Sequence[str],
    value: str,
    quantiles: dict[str, float],
    fractions: Sequence[float] | None,
) -> str:
    """SQL: per `keys`, Polars' `nearest` quantiles of `value` (non-null) and its max.

    `source` is a relation with the key columns and `value`; the result has the keys, one
    column per name in `quantiles` and `max`. `fractions` are `nearest_fractions` of the
    groups' sizes (`group_sizes_sql`): one `quantile_disc` of them all per group, DuckDB's
    selection, and each quantile the element its own fraction names. Sorting every group
    (`row_number()` over the values) cost most of the metric queries' CPU at a million cases
    a day (seven sorts); it stays for `fractions` None (`MAX_SELECTED_FRACTIONS`), the value at
    index `floor((n - 1) q + 0.5)` of the sorted values found by `row_number()`.
    """
    part = ", ".join(keys)
    if fractions is None:
        picks = ", ".join(
            f"any_value(v) FILTER (rn = {nearest_index_sql('n', q)}::BIGINT + 1) AS {_quote(name)}"
            for name, q in quantiles.items()
        )
        return f"""
            SELECT {part}, {picks}, max(v) AS max FROM (
                SELECT {part}, v, row_number() OVER (PARTITION BY {part} ORDER BY v) AS rn,
                    count(*) OVER (PARTITION BY {part}) AS n
                FROM (SELECT {part}, {value} AS v FROM {source}) WHERE v IS NOT NULL
            ) GROUP BY {part}
        """
    listed = "[" + ", ".join(f"'{f!r}'::DOUBLE" for f in fractions or [0.5]) + "]"
    picks = ", ".join(
        f"qs[list_position({listed}, ({nearest_index_sql('n', q)} + 0.5) / n)] AS {_quote(name)}"
        for name, q in quantiles.items()
    )
    return f"""
        SELECT {part}, {picks}, max FROM (
            SELECT {part}, count(*) AS n, quantile_disc(v, {listed}) AS qs, max(v) AS max
            FROM (SELECT {part}, {value} AS v FROM {source}) WHERE v IS NOT NULL GROUP BY {part}
        )
    """


def group_sizes_sql(source: str, keys: Sequence[str], value: str) -> str:
    """SQL: the distinct numbers of non-null `value`s per `keys` group of `source` (what
    `nearest_fractions` needs to know before `quantile_sql` runs)."""
    part = ", ".join(keys)
    return (
        f"SELECT DISTINCT count(*) AS n FROM (SELECT {part}, {value} AS v FROM {source}) "
        f"WHERE v IS NOT NULL GROUP BY {part}"
    )


QUANTILES = {"p50": 0.5, "p95": 0.95}  # the distributions' quantiles, as `metrics` names them


@dataclass(frozen=True)
class Distribution:
    """p50, p95 and max of `value` per day (and `key`) over `source`, in seconds."""

    source: str
    value: str
    prefix: str
    dimension: str
    key: str | None

    @property
    def keys(self) -> list[str]:
        return ["partition_date", *([_quote(self.key)] if self.key else [])]

    def sizes_sql(self) -> str:
        return group_sizes_sql(self.source, self.keys, self.value)

    def query(self, sizes: Iterable[int]) -> str:
        """The long rows, for groups of the given `sizes` (`sizes_sql`'s answer)."""
        fractions = nearest_fractions(sizes, QUANTILES.values())
        selected = fractions if len(fractions) <= MAX_SELECTED_FRACTIONS else None
        stats = quantile_sql(self.source, self.keys, self.value, QUANTILES, selected)
        keyed = f"SELECT *, {_key(self.key)} AS key FROM ({stats})"
        names = (*QUANTILES, "max")
        return _long(keyed, self.dimension, {f"{self.prefix}_{s}_s": _quote(s) for s in names})


def distributions() -> list[Distribution]:
    """Every distribution metric, in `metrics.decision_metrics`'s order: time to decision,
    reviewer response, review time per case, then the stage latencies (seconds from the
    latest earlier stage reached to each stage)."""
    executed = f"(SELECT * FROM {FACTS} WHERE executed_action IS NOT NULL)"
    reviewed = f"(SELECT * FROM {FACTS} WHERE override IS NOT NULL)"
    out = [
        Distribution(
            executed, "time_to_decision_s", "time_to_decision", "decided_by", "decided_by"
        ),
        Distribution(
            reviewed, "reviewer_response_s", "reviewer_response", "reviewer", "reviewer_id"
        ),
        Distribution(
            reviewed, "review_seconds_per_case", "review_time_per_case", "reviewer", "reviewer_id"
        ),
    ]
    for i, stage in enumerate(STAGES[1:], start=1):
        previous = "coalesce(" + ", ".join(f"{s}_at" for s in reversed(STAGES[:i])) + ")"
        source = (
            f"(SELECT partition_date, {_literal(stage)} AS stage, "
            f"{_seconds(previous, f'{stage}_at')} AS latency FROM {FACTS})"
        )
        out.append(Distribution(source, "latency", "stage_latency", "stage", "stage"))
    return out


def distribution_sizes(
    con: duckdb.DuckDBPyConnection, shown: Sequence[Distribution]
) -> list[list[int]]:
    """Each distribution's group sizes, all counted in one query (a hash count per group)."""
    if not shown:
        return []
    union = " UNION ALL ".join(f"(SELECT {i} AS d, n FROM ({x.sizes_sql()}))"
                               for i, x in enumerate(shown))  # fmt: skip
    sizes: list[list[int]] = [[] for _ in shown]
    for d, n in con.execute(union).fetchall():
        sizes[int(d)].append(int(n))
    return sizes


def _queues() -> list[str]:
    """Queue depth, backlog age and SLA breaches of exported cases, as of `$as_of`."""
    exported = f"""(SELECT partition_date, batch_queue, verdict IS NULL AS pending,
            coalesce(verdict_received_at, $as_of::TIMESTAMPTZ) > due_at AS breached,
            {_seconds("exported_at", "$as_of::TIMESTAMPTZ", 1_000_000)} AS age_s
        FROM {FACTS} WHERE exported_at IS NOT NULL)"""
    oldest = f"max(age_s) FILTER (pending) * {1 / 3600!r}"  # Polars' `/ 3600`
    per_queue = (
        f"SELECT partition_date, {_key('batch_queue')} AS key, "
        "count(*) FILTER (pending) AS queue_depth, count(*) FILTER (breached) AS sla_breaches, "
        "count(*) FILTER (breached) / nullif(count(breached), 0) AS sla_breach_rate, "
        f"{oldest} AS oldest_pending_age_h FROM {exported} GROUP BY partition_date, batch_queue"
    )
    total = (
        f"SELECT partition_date, '{ALL}' AS key, count(*) FILTER (pending) AS backlog, "
        f"count(*) FILTER (breached) AS sla_breaches, {oldest} AS oldest_pending_age_h "
        f"FROM {exported} GROUP BY partition_date"
    )
    queue = ("queue_depth", "sla_breaches", "sla_breach_rate", "oldest_pending_age_h")
    overall = ("backlog", "sla_breaches", "oldest_pending_age_h")
    return [
        _long(per_queue, "queue", {m: m for m in queue}),
        _long(total, ALL, {m: m for m in overall}),
    ]


def _outcomes() -> list[str]:
    """Bad-outcome rate of cases whose outcome is known (`OUTCOMES`: case_id, bad)."""
    out = []
    for dimension, column in (("final_action", "executed_action"), ("route", "route")):
        grouped = (
            f"SELECT partition_date, {_key(column)} AS key, count(*) AS outcome_known, "
            "avg(o.bad::DOUBLE) AS bad_rate "
            f"FROM {FACTS} f JOIN {OUTCOMES} o USING (case_id) "
            f"GROUP BY partition_date, {_quote(column)}"
        )
        out.append(
            _long(grouped, dimension, {"outcome_known": "outcome_known", "bad_rate": "bad_rate"})
        )
    return out


def metric_queries(with_outcomes: bool, sizes: Sequence[Sequence[int]]) -> list[str]:
    """Every metric's query over `metric_facts`, in `metrics.decision_metrics`'s order.
    `sizes`: each of `distributions()`'s group sizes (`distribution_sizes`)."""
    executed = "executed_action IS NOT NULL"
    shown = distributions()
    if len(sizes) != len(shown):
        raise ValueError(f"{len(sizes)} distributions' sizes given for {len(shown)}")
    return [
        *_counts("true", ALL, None),
        *_counts("true", "route", "route"),
        *_counts("route = 'human_review'", "queue", "review_queue"),
        *_counts("true", "risk_band", "risk_band"),
        *_counts(executed, "final_action", "executed_action"),
        *_overrides(ALL, None),
        *_overrides("reviewer", "reviewer_id"),
        *_overrides("rule", "route_rule_id"),
        *_overrides("policy_version", "policy_version"),
        *(d.query(n) for d, n in zip(shown, sizes, strict=True)),
        *_queues(),
        *(_outcomes() if with_outcomes else []),
    ]


def decision_metrics_db(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    *,
    as_of: datetime,
    decline_bands: Sequence[str],
    outcomes: pl.DataFrame | OutcomeFiles | None = None,
    qa: pl.DataFrame | None = None,
    limit: str | None = METRICS_MEMORY_LIMIT,
    facts: CaseFacts | None = None,
) -> pl.DataFrame:
    """`metrics.decision_metrics` of `domain`'s `days`, aggregated in DuckDB on `con`.

    Reads `case_stage_times`, or the `facts` already loaded on `con` for these days
    (`facts.case_facts`: one read for metrics, checks, fairness and traces); `outcomes`
    (case_id, bad) and `qa` as for `decision_metrics` (the QA sample is small: it keeps the
    Polars estimate), or the outcome files for DuckDB to read (`outcomes_db.OutcomeFiles`).
    `limit` bounds DuckDB's memory for the aggregation (None leaves the connection's).
    """
    with memory_limit(con, limit):
        if facts is None:
            with case_facts(con, domain, days, decline_bands) as own:
                rows = _metric_rows(con, own, as_of, outcomes)
        else:
            facts.require(domain, days)
            rows = _metric_rows(con, facts, as_of, outcomes)
    if rows is None:
        return pl.DataFrame(schema=METRIC_SCHEMA)
    parts = [rows.cast(METRIC_SCHEMA), *qa_error_estimates(qa)]
    return (
        pl.concat([p for p in parts if p.height], how="vertical_relaxed")
        .cast(METRIC_SCHEMA)
        .sort("partition_date", "metric", "dimension", "key")
    )


def _metric_rows(
    con: duckdb.DuckDBPyConnection,
    facts: CaseFacts,
    as_of: datetime,
    outcomes: pl.DataFrame | OutcomeFiles | None,
) -> pl.DataFrame | None:
    """Every metric query's rows over `metric_facts` (None: the days have no case).

    One query at a time, not one `UNION ALL` of them: an exact quantile holds every value of
    its group in state DuckDB cannot spill, and a union keeps the seven distributions' states
    alive together. At ten million cases a day that union ran out of the step's 1 GB limit
    (session 25's 10M run); one distribution at a time needs a seventh of it.
    """
    if not facts.run_rows:
        return None
    with metric_outcomes(con, outcomes) as known:
        sizes = distribution_sizes(con, distributions())
        parts = [
            con.sql(query, params={"as_of": as_of} if "$as_of" in query else None).pl()
            for query in metric_queries(known, sizes)
        ]
    return pl.concat([part.cast(METRIC_SCHEMA) for part in parts], how="vertical")

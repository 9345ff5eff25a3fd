"""Fairness of a run's days counted in DuckDB: `fairness_table` without a frame per case.

The run days' cases (`case_stage_times`, read once with the run's other facts:
`facts.case_facts`) and their protected values (the stored validated cases' Parquet files,
read by DuckDB) become one temporary table with the four stage columns
of `fairness.stage_approvals` and one group label per attribute. Per stage and attribute,
DuckDB counts the groups; the standardised mean difference needs each group's PD values, which
come back in case order as one float array per group (8 bytes a case, not a frame) and are
summarised as the frame path summarises them (`fairness.Scores`), so the judging code is
`fairness.group_rows` itself and the figures are identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.lawful import ProtectedAttribute
from hitl_gate.observability.facts import METRIC_FACTS, CaseFacts, case_facts
from hitl_gate.observability.facts import sql_identifier as _quote
from hitl_gate.observability.facts import sql_literal as _literal
from hitl_gate.observability.fairness import (
    APPROVE,
    MISSING,
    STAGES,
    TABLE_SCHEMA,
    Scores,
    group_rows,
    metric_rows,
)

FAIR = "fairness_cases"


def _label(name: str, bins: Sequence[float]) -> str:
    """SQL of an attribute's group: its text, or its interval (`fairness.interval_labels`)."""
    column = f"p.{_quote(name)}"
    if not bins:
        return f"coalesce({column}::VARCHAR, '{MISSING}')"
    x = f"TRY_CAST({column} AS DOUBLE)"
    bounds = [-math.inf, *bins, math.inf]
    cases = " ".join(
        f"WHEN {x} >= '{low!r}'::DOUBLE AND {x} < '{high!r}'::DOUBLE "
        f"THEN {_literal(f'[{low:g}, {high:g})')}"
        for low, high in zip(bounds, bounds[1:], strict=False)
    )
    return f"CASE {cases} ELSE '{MISSING}' END"


def _protected_files(warehouse: Path, domain: DomainConfig, days: Sequence[date]) -> list[Path]:
    folder = warehouse / domain.name / "validated_cases"
    return [folder / f"{d.isoformat()}.parquet" for d in days
            if (folder / f"{d.isoformat()}.parquet").exists()]  # fmt: skip


def load_fairness_cases(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    days: Sequence[date],
    decline_bands: Sequence[str],
    warehouse: Path,
) -> list[str]:
    """Build `fairness_cases` from the facts of `days` loaded on `con` (`facts.case_facts`);
    return the protected attributes found in the stored files.

    A case's protected values are those of the last file (day order) and row holding its id,
    as `fairness_period.read_protected_values` keeps them. Each case gets its rank by day and
    case id (`case_order`): the PD arrays are sorted by it, not by the text of the id again
    per stage.
    """
    names = list(domain.protected_attributes)
    files = _protected_files(warehouse, domain, days)
    present: list[str] = []
    parts = []
    for number, path in enumerate(files):
        columns = set(pl.read_parquet_schema(path))
        here = [n for n in names if n in columns]
        present += [n for n in here if n not in present]
        values = ", ".join(f"{_quote(n)}::VARCHAR AS {_quote(n)}" for n in here)
        parts.append(
            f"SELECT {_quote(domain.case_id)}::VARCHAR AS case_id{', ' if here else ''}{values}, "
            f"{number} AS file_number, file_row_number FROM read_parquet("
            f"{_literal(str(path))}, file_row_number = true)"
        )
    if present:
        union = " UNION ALL BY NAME ".join(f"({q})" for q in parts)
        protected = (
            f"(SELECT * FROM ({union}) QUALIFY row_number() OVER (PARTITION BY case_id "
            "ORDER BY file_number DESC, file_row_number DESC) = 1)"
        )
    else:
        protected = "(SELECT NULL::VARCHAR AS case_id WHERE false)"
    declined = ", ".join(_literal(b) for b in decline_bands)
    band = (
        f"CASE WHEN risk_band IS NULL THEN NULL ELSE "
        f"(NOT ({f'risk_band IN ({declined})' if declined else 'false'}))::INTEGER END"
    )
    policy = (
        "CASE WHEN route = 'auto_approve' THEN 1 WHEN route = 'auto_decline' THEN 0 "
        f"WHEN route = 'human_review' THEN {band} END"
    )
    verdict = (
        f"CASE WHEN verdict IS NOT NULL THEN (verdict = '{APPROVE}')::INTEGER "
        f"WHEN route = 'human_review' THEN NULL ELSE {policy} END"
    )
    final = (
        f"CASE WHEN executed_action IS NOT NULL THEN (executed_action = '{APPROVE}')::INTEGER END"
    )
    labels = "".join(
        f", {_label(n, domain.protected_attributes[n].bins)} AS {_quote('g_' + n)}" for n in present
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {FAIR} AS
        SELECT c.partition_date, c.pd, {band} AS model_band,
            {policy} AS policy_route, {verdict} AS human_verdict, {final} AS final_action,
            row_number() OVER (ORDER BY c.partition_date, c.case_id) AS case_order
            {labels}
        FROM {METRIC_FACTS} c
        LEFT JOIN {protected} p ON p.case_id = c.case_id
        """
    )
    return present


@dataclass(frozen=True)
class GroupPD:
    """One group's PD in case order (`missing`: PD null) and, per stage, which of its cases
    have that stage's outcome (the stage's cases are the rows where it is True)."""

    values: np.ndarray
    missing: np.ndarray
    reached: dict[str, np.ndarray]

    def of(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, missing) of the stage's cases, in case order."""
        kept = self.reached[stage]
        return self.values[kept], self.missing[kept]


def pd_by_group(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, GroupPD]:
    """Every group of attribute `name`: its cases' PD in case order, with the stages reached.

    One sorted read per attribute for all four stages: a read per stage sorted the same cases
    by group and case order four times (and each stage's cases are the rows it reached, in
    the same order: masking keeps the values and their order exactly).
    """
    label = _quote("g_" + name)
    reached = ", ".join(f"{s} IS NOT NULL AS {_quote('r_' + s)}" for s in STAGES)
    anywhere = " OR ".join(f"{s} IS NOT NULL" for s in STAGES)
    frame = con.sql(
        f'SELECT {label} AS "group", pd, {reached} FROM {FAIR} WHERE {anywhere} '
        'ORDER BY "group", case_order'
    ).pl()
    return {
        str(key): GroupPD(
            part["pd"].cast(pl.Float64).to_numpy(),
            part["pd"].is_null().to_numpy(),
            {s: part["r_" + s].to_numpy() for s in STAGES},
        )
        for (key,), part in frame.partition_by("group", as_dict=True, maintain_order=True).items()
    }


def _stage_rows(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    name: str,
    attribute: ProtectedAttribute,
    confidence: float,
    pds: dict[str, GroupPD],
) -> tuple[list[dict[str, object]], dict[date, list[dict[str, object]]]]:
    """`group_rows` of one stage and attribute: over all days, and per day.

    One query whatever the number of days and groups: the groups counted per day (the run's
    counts are their sums); the PD of the stage's cases by group comes from `pds`
    (`pd_by_group`); a day's PD is its slice, the per-day counts giving the slices' lengths.
    Each group's and day's PD is summarised once (`Scores`), not once per group it is
    compared with.
    """
    label = _quote("g_" + name)
    where = f"{stage} IS NOT NULL"
    daily = con.sql(
        f"SELECT partition_date, {label} AS group, count(*) AS n, "
        f"sum({stage})::BIGINT AS approvals FROM {FAIR} WHERE {where} GROUP BY ALL "
        'ORDER BY partition_date, "group"'
    ).pl()
    if daily.height == 0:
        return [], {}
    arrays = {group: pd.of(stage) for group, pd in pds.items()}
    total = daily.group_by("group").agg(pl.col("n").sum(), pl.col("approvals").sum())
    whole = {group: Scores.of(*arrays[group]) for group in arrays}
    run = group_rows(total, whole.__getitem__, stage, name, attribute, confidence)
    # Where each day's cases start in each group's array (days in order).
    offsets = daily.with_columns(
        (pl.col("n").cum_sum().over("group") - pl.col("n")).alias("offset")
    )
    # Each day's groups as Python rows (days, then groups, in order): a frame per day was a
    # Polars call per day and group.
    by_day: dict[date, list[tuple[str, int, int, int]]] = {}
    for day, group, start, n, approvals in offsets.select(
        "partition_date", "group", "offset", "n", "approvals"
    ).iter_rows():
        by_day.setdefault(day, []).append((group, start, n, approvals))
    per_day: dict[date, list[dict[str, object]]] = {}
    for day, groups in by_day.items():
        sliced = {}
        for group, start, n, _ in groups:
            values, missing = arrays[group]
            sliced[group] = Scores.of(values[start : start + n], missing[start : start + n])
        per_day[day] = group_rows(
            [{"group": g, "n": n, "approvals": a} for g, _, n, a in groups],
            sliced.__getitem__, stage, name, attribute, confidence,
        )  # fmt: skip
    return run, per_day


def fairness_db(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    days: Sequence[date],
    decline_bands: Sequence[str],
    warehouse: Path,
    facts: CaseFacts | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The run days' `fairness_table` and its `decision_metrics` rows per day, as
    `fairness_table` and `fairness_metrics` compute them from frames. `facts`: the run's
    facts already loaded on `con` (None: read here)."""
    if facts is None:
        with case_facts(con, domain.name, days, decline_bands) as own:
            return fairness_db(con, domain, days, decline_bands, warehouse, own)
    facts.require(domain.name, days)
    confidence = domain.fairness.confidence
    present = load_fairness_cases(con, domain, days, decline_bands, warehouse)
    run: list[dict[str, object]] = []
    per_day: dict[date, list[dict[str, object]]] = {}
    try:
        cases_days = [d for (d,) in con.execute(
            f"SELECT DISTINCT partition_date FROM {FAIR} ORDER BY 1").fetchall()]  # fmt: skip
        # One attribute's PD arrays held at a time; the rows kept in stage, then attribute order.
        found = {}
        for name, attribute in domain.protected_attributes.items():
            if name in present:
                pds = pd_by_group(con, name)
                for stage in STAGES:
                    found[stage, name] = _stage_rows(con, stage, name, attribute, confidence, pds)
                del pds
        for stage in STAGES:
            for name in domain.protected_attributes:
                if (stage, name) not in found:
                    continue
                rows, daily = found[stage, name]
                run += rows
                for day, day_rows in daily.items():
                    per_day.setdefault(day, []).extend(day_rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {FAIR}")
    table = pl.DataFrame(run, schema=TABLE_SCHEMA)
    return table, metric_rows(
        (d, pl.DataFrame(per_day.get(d, []), schema=TABLE_SCHEMA)) for d in cases_days
    )

"""The inputs of fairness measurement: the protected values of stored cases, and a period's
decided cases from the audit database (hitl_gate/observability/fairness.py measures them).

Only these functions read the protected columns after validation; features, scoring, routing
and review never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.observability.fairness import (
    FairnessFindings,
    fairness_findings,
    fairness_table,
    review_effect,
)


def read_protected_values(
    warehouse: Path, domain: DomainConfig, days: Sequence[date]
) -> pl.DataFrame:
    """case_id and the protected attribute columns of `days`, from the stored validated cases.

    Only fairness measurement reads these columns; absent days are skipped.
    """
    names = [n for n in domain.protected_attributes]
    schema = {"case_id": pl.String, **dict.fromkeys(names, pl.String)}
    if not names:
        return pl.DataFrame(schema=schema)
    frames = []
    for day in days:
        path = warehouse / domain.name / "validated_cases" / f"{day.isoformat()}.parquet"
        if path.exists():
            present = [n for n in names if n in pl.read_parquet_schema(path)]
            frame = pl.read_parquet(path, columns=[domain.case_id, *present])
            frames.append(
                frame.select(
                    pl.col(domain.case_id).cast(pl.String).alias("case_id"),
                    *[pl.col(n).cast(pl.String) for n in present],
                )
            )
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="diagonal_relaxed").unique("case_id", keep="last")


def with_protected(cases: pl.DataFrame, protected: pl.DataFrame) -> pl.DataFrame:
    """The cases with their protected attribute values (null where none is stored)."""
    if protected.width <= 1:
        return cases
    return cases.join(protected, on="case_id", how="left")


# The `case_stage_times` columns fairness reads.
CASE_COLUMNS = ("partition_date", "case_id", "pd", "risk_band", "route", "verdict",
                "executed_action")  # fmt: skip


@dataclass(frozen=True)
class FairnessReport:
    """A period's fairness table, review's effect on it and the checks' verdicts."""

    domain: str
    start: date
    end: date
    cases: int
    table: pl.DataFrame
    review: pl.DataFrame
    findings: FairnessFindings


def period_report(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    domain: DomainConfig,
    start: date,
    end: date,
    decline_bands: Sequence[str],
) -> FairnessReport:
    """Fairness of every case of `domain` decided from `start` to `end` (inclusive)."""
    from hitl_gate.core.database import query_frame

    cases = query_frame(
        con,
        f"SELECT {', '.join(CASE_COLUMNS)} FROM case_stage_times "
        "WHERE domain = ? AND partition_date BETWEEN ? AND ? ORDER BY partition_date, case_id",
        [domain.name, start, end],
    )
    days = sorted(set(cases["partition_date"].to_list()))
    attributed = with_protected(cases, read_protected_values(warehouse, domain, days))
    limits = domain.fairness
    attributes = domain.protected_attributes
    table = fairness_table(attributed, attributes, decline_bands, limits.confidence)
    return FairnessReport(
        domain=domain.name,
        start=start,
        end=end,
        cases=cases.height,
        table=table,
        review=review_effect(table),
        findings=fairness_findings(table, limits),
    )

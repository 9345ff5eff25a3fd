"""Later outcomes (e.g. repayment status) linked to the decisions they follow.

Outcome files land in `<landing>/<outcomes_subdir>/` with the case id and the label column the
domain declares (for credit, `loan_status`), optionally an `observed_on` date. Each file is
recorded once per case (keyed by the file's SHA-256), so re-reading the folder is idempotent; a
row whose case was never executed is kept with `linked = false` rather than dropped.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame
from hitl_gate.core.domain import DomainConfig


def read_outcome_file(path: Path, domain: DomainConfig) -> pl.DataFrame:
    """One outcome file as rows of (case_id, outcome, observed_on, source_row).

    Raises ValueError naming the file and the missing column when the file lacks them.
    """
    # The bytes, not the path: Polars reads a path string as a glob pattern (`x[1].csv`).
    frame = pl.read_csv(path.read_bytes(), infer_schema=False)
    label = domain.model.label.column
    missing = [c for c in (domain.case_id, label) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    file_day = datetime.fromtimestamp(path.stat().st_mtime, UTC).date()
    observed = (
        pl.col("observed_on").str.to_date(strict=False).fill_null(file_day)
        if "observed_on" in frame.columns
        else pl.lit(file_day)
    )
    return (
        frame.with_row_index("source_row", offset=1)
        .select(
            pl.col(domain.case_id).alias("case_id"),
            pl.col(label).alias("outcome"),
            observed.alias("observed_on"),
            pl.col("source_row").cast(pl.Int64),
        )
        .filter(pl.col("case_id").is_not_null() & pl.col("outcome").is_not_null())
    )


def ingest_outcomes(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, folder: Path, run_id: str
) -> tuple[int, list[str]]:
    """Record every outcome file under `folder`; return (new rows, per-file errors)."""
    errors: list[str] = []
    added = 0
    for path in sorted(folder.glob("*.csv")) if folder.exists() else []:
        try:
            rows = read_outcome_file(path, domain)
        except (ValueError, pl.exceptions.PolarsError) as exc:
            errors.append(str(exc))
            continue
        executed = query_frame(
            con, "SELECT case_id FROM executions WHERE domain = ?", [domain.name]
        )
        rows = rows.with_columns(
            pl.lit(domain.name).alias("domain"),
            pl.col("case_id").is_in(executed["case_id"].implode()).alias("linked"),
            pl.lit(str(path)).alias("source_file"),
            pl.lit(hashlib.sha256(path.read_bytes()).hexdigest()).alias("source_sha256"),
            pl.lit(run_id).alias("run_id"),
            pl.lit(datetime.now(UTC)).alias("recorded_at"),
        )
        added += insert_new_rows(con, "outcomes", rows)
    return added, errors

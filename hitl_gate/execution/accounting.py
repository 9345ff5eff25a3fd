"""The day's accounting: every case read is quarantined, executed or still pending, once.

After execution the run closes its days: the balance goes into `partition_accounting`, outcome
files that arrived are recorded, and the audit log is sealed (a signed checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.audit.replica import refresh_replica
from hitl_gate.audit.run_seal import seal_days_through_segment
from hitl_gate.audit.run_segments import Segments
from hitl_gate.audit.seal import BATCH_ROWS, STEP_OWNED, SealResult, seal_run
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.audit.witness import WitnessConfig
from hitl_gate.core.database import OpenAttaching, query_frame, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.settings import DEFAULT_SLICE_ROWS
from hitl_gate.execution.outcomes import ingest_outcomes


@dataclass(frozen=True)
class AccountedDays:
    """The days' balance rows, the outcome rows recorded (and files skipped, rows rejected),
    the seal."""

    accounting: pl.DataFrame
    outcomes_recorded: int
    outcome_errors: list[str]
    sealed: SealResult


def day_accounting(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: list[date],
    statuses: pl.DataFrame,
    run_id: str,
    now: datetime,
) -> pl.DataFrame:
    """Per day: rows read, quarantined, executed (audit DB) and pending (`statuses` not executed).

    `balanced` says whether rows read = quarantined + executed + pending review; `statuses`
    holds the final decisions' `partition_date` and `status`.
    """
    accounting = query_frame(
        con,
        """
        WITH days AS (SELECT unnest(?::DATE[]) AS partition_date),
        files AS (
            SELECT partition_date, sum(rows_read) AS rows_read,
                   sum(rows_quarantined) AS rows_quarantined
            FROM input_files WHERE domain = ? GROUP BY ALL),
        ex AS (SELECT partition_date, count(*) AS executed FROM executions
               WHERE domain = ? GROUP BY ALL)
        SELECT ? AS domain, days.partition_date,
               coalesce(files.rows_read, 0)::BIGINT AS rows_read,
               coalesce(files.rows_quarantined, 0)::BIGINT AS rows_quarantined,
               coalesce(ex.executed, 0)::BIGINT AS executed
        FROM days LEFT JOIN files USING (partition_date) LEFT JOIN ex USING (partition_date)
        ORDER BY days.partition_date
        """,
        [days, domain, domain, domain],
    )
    pending = (
        statuses.filter(pl.col("status") != "executed")
        .group_by("partition_date")
        .len("pending_review")
    )
    return (
        accounting.join(pending, on="partition_date", how="left")
        .with_columns(pl.col("pending_review").fill_null(0).cast(pl.Int64))
        .with_columns(
            (
                pl.col("rows_read")
                == pl.col("rows_quarantined") + pl.col("executed") + pl.col("pending_review")
            ).alias("balanced"),
            pl.lit(run_id).alias("run_id"),
            pl.lit(now).alias("recorded_at"),
        )
    )


def account_days(
    domain: DomainConfig,
    statuses: pl.DataFrame,
    connect: OpenAttaching,
    outcomes: Path,
    days: list[date],
    *,
    run_id: str,
    signing_key: CheckpointSigner,
    checkpoints: Path,
    seal_memory_limit: str | None,
    witness: WitnessConfig | None = None,
    replica: Path | None = None,
    seal_rows: int = BATCH_ROWS,
    segments: Segments | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
) -> AccountedDays:
    """Record the days' accounting, the outcome files under `outcomes`, and seal the run.

    With `replica`, the auditors' replica is refreshed from the sealed state before the
    connection closes (`hitl_gate.audit.replica`). `seal_rows`: the seal's slice size;
    `slice_rows`: the outcome files' (`HITL_SLICE_ROWS`, read under `seal_memory_limit`). With
    `segments`, the run's versioned rows are sealed through a segment of their own
    (`hitl_gate.audit.run_seal`): the connection is closed while the segment is sealed, so
    other runs write and seal meanwhile.
    """
    now = datetime.now(UTC)
    with connect() as con:
        accounting = day_accounting(con, domain.name, days, statuses, run_id, now)
        replace_partition_slice(con, "partition_accounting", accounting, domain.name, days)
        added, errors = ingest_outcomes(
            con, domain, outcomes, run_id, slice_rows=slice_rows, memory_limit=seal_memory_limit
        )
        if segments is None:
            sealed = seal_run(
                con,
                run_id,
                signing_key,
                checkpoints,
                batch_rows=seal_rows,
                memory_limit=seal_memory_limit,
                witness=witness,
                owned=STEP_OWNED,
            )
            if replica is not None:
                refresh_replica(con, replica)
            return AccountedDays(accounting, added, errors, sealed)
    # Sealed on connections of its own: the global file is closed while the segment is sealed.
    sealed = seal_days_through_segment(
        connect,
        segments,
        domain.name,
        days,
        run_id,
        signing_key,
        checkpoints,
        memory_limit=seal_memory_limit,
        witness=witness,
        replica=replica,
        batch_rows=seal_rows,
    )
    return AccountedDays(accounting, added, errors, sealed)

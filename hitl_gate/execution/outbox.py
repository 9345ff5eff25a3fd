"""The execution outbox: a Parquet file per day of executed decisions, for downstream systems."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.day_files import atomic_write

REVERSAL_REQUESTS = "reversal_requests.parquet"


def write_outbox(executed: pl.DataFrame, folder: Path, days: list[date]) -> None:
    """Rewrite each day's outbox file from the executions table (idempotent by construction)."""
    for day in days:
        _write(executed.filter(pl.col("partition_date") == day), folder / f"{day}.parquet")


def write_reversal_requests(reversals: pl.DataFrame, folder: Path) -> None:
    """The reversal requests, when there are any: never executed, downstream decides."""
    if reversals.height:
        _write(reversals, folder / REVERSAL_REQUESTS)


def _write(frame: pl.DataFrame, target: Path) -> None:
    """Replace an outbox file atomically: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(frame, target, "zstd")

"""The execution outbox: a Parquet file per day of executed decisions, for downstream systems.

Written from pages of the days' executions in case order (`OutboxWriter`): each page is
appended to its days' staged files, so the outbox of a large day never sits in memory whole.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.day_files import PARTITION_COLUMN, atomic_write, temporary_name
from hitl_gate.core.staged_parquet import AbortsOnError, StagedParquet

REVERSAL_REQUESTS = "reversal_requests.parquet"


class OutboxWriter(AbortsOnError):
    """The days' outbox files from pages of executions, renamed into place at `commit`.

    One map of pending files, a staged file per day (`StagedParquet`): every page is appended
    to its days' files as it comes, so no page is held (nor alive while the step seals), and
    the outbox of a large day never sits in memory whole. `commit` renames every day's file
    into place (an empty file for a day without executions); leaving the `with` block on an
    error removes what was staged, so a refused seal leaves the outbox with its previous files.
    """

    def __init__(self, folder: Path, days: list[date]) -> None:
        self._pending: dict[date, StagedParquet] = {}
        for day in days:
            target = folder / f"{day}.parquet"
            self._pending[day] = StagedParquet(target, temporary_name(target), "zstd")

    def write(self, page: pl.DataFrame) -> None:
        """Append a page of executions (any days) to its days' pending files."""
        for day, staged in self._pending.items():
            staged.write(page.filter(pl.col(PARTITION_COLUMN) == day))

    def commit(self) -> None:
        """Rename every day's file into place; at least one page must have been written."""
        if not all(staged.started for staged in self._pending.values()):
            raise ValueError("no page of executions was written to the outbox")
        for staged in self._pending.values():
            staged.commit()

    def abort(self) -> None:
        for staged in self._pending.values():
            staged.abort()


def write_reversal_requests(reversals: pl.DataFrame, folder: Path) -> None:
    """The reversal requests, when there are any: never executed, downstream decides."""
    if reversals.height:
        _write(reversals, folder / REVERSAL_REQUESTS)


def _write(frame: pl.DataFrame, target: Path) -> None:
    """Replace an outbox file atomically: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(frame, target, "zstd")

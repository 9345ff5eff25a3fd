"""The execution outbox: a Parquet file per day of executed decisions, for downstream systems.

Written from pages of the days' executions in case order (`OutboxWriter`): a run whose
executions fit one page writes each day's file in one go, as always; more pages are appended
to each day's staged file, so the outbox of a large day never sits in memory whole.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.day_files import PARTITION_COLUMN, atomic_write, temporary_name
from hitl_gate.core.staged_parquet import AbortsOnError, StagedParquet

REVERSAL_REQUESTS = "reversal_requests.parquet"


def write_outbox(executed: pl.DataFrame, folder: Path, days: list[date]) -> None:
    """Rewrite each day's outbox file from the executions table (idempotent by construction)."""
    for day in days:
        _write(executed.filter(pl.col("partition_date") == day), folder / f"{day}.parquet")


class OutboxWriter(AbortsOnError):
    """The days' outbox files from pages of executions, renamed into place at `commit`.

    The first page is held; a second one starts a staged file per day (the held page first),
    and every page is then appended to its days' files. One page alone is written as
    `write_outbox` writes it, byte for byte the files a whole-day write gives, into temporary
    files at `close_pages` (so the step does not hold the page while it seals) and renamed at
    `commit`. Leaving the `with` block on an error removes what was staged; the outbox keeps
    its previous files.
    """

    def __init__(self, folder: Path, days: list[date]) -> None:
        self.folder, self.days = folder, days
        self._held: pl.DataFrame | None = None
        self._staged: dict[date, StagedParquet] | None = None
        self._single: dict[Path, Path] = {}  # target -> the temporary file of a lone page

    def write(self, page: pl.DataFrame) -> None:
        if self._single:
            raise ValueError("a page of executions after `close_pages`")
        if self._staged is None and self._held is None:
            self._held = page
            return
        if self._staged is None:
            self._staged = {day: self._staged_file(day) for day in self.days}
            self._append(self._held)
            self._held = None
        self._append(page)

    def close_pages(self) -> None:
        """No page follows: a page still held goes to its days' temporary files now."""
        if self._held is None:
            return
        for day in self.days:
            target = self.folder / f"{day}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            self._single[target] = temporary_name(target)
            day_rows = self._held.filter(pl.col(PARTITION_COLUMN) == day)
            day_rows.write_parquet(self._single[target], compression="zstd")  # as `_write`
        self._held = None

    def commit(self) -> None:
        if self._staged is None:
            self.close_pages()
            if not self._single:
                raise ValueError("no page of executions was written to the outbox")
            for target, tmp in self._single.items():
                os.replace(tmp, target)
            self._single = {}
            return
        for staged in self._staged.values():
            staged.commit()

    def abort(self) -> None:
        for staged in (self._staged or {}).values():
            staged.abort()
        for tmp in self._single.values():
            tmp.unlink(missing_ok=True)

    def _staged_file(self, day: date) -> StagedParquet:
        target = self.folder / f"{day}.parquet"
        return StagedParquet(target, temporary_name(target), "zstd")

    def _append(self, page: pl.DataFrame | None) -> None:
        assert page is not None and self._staged is not None
        for day, staged in self._staged.items():
            staged.write(page.filter(pl.col(PARTITION_COLUMN) == day))


def write_reversal_requests(reversals: pl.DataFrame, folder: Path) -> None:
    """The reversal requests, when there are any: never executed, downstream decides."""
    if reversals.height:
        _write(reversals, folder / REVERSAL_REQUESTS)


def _write(frame: pl.DataFrame, target: Path) -> None:
    """Replace an outbox file atomically: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(frame, target, "zstd")

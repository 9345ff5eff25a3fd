"""Frames stored one Parquet file per partition day, whole or slice by slice.

Why here, below Dagster: the feature store writes its offline source in the same one-file-per-
day layout the IO manager uses between assets, and both must split a frame by its
`partition_date` the same way. The IO manager (`pipelines/io_managers.py`) only adds Dagster's
side: which asset and partitions a step reads or writes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Literal, cast

import polars as pl

from hitl_gate.core.staged_parquet import AbortsOnError, StagedParquet

PARTITION_COLUMN = "partition_date"
# The codecs Polars writes Parquet with (its own alias for them is private).
ParquetCompression = Literal["lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"]


class StagedPartitions:
    """A step's output already written, one temporary file per day: `handle_output` renames."""

    def __init__(self, files: dict[str, StagedParquet]) -> None:
        self.files = files

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files.values())

    def commit(self) -> None:
        for staged in self.files.values():
            staged.commit()


class PartitionWriter(AbortsOnError):
    """Writes a step's output slice by slice into one file per partition day.

    Each `write` splits its frame by `partition_date` (no copy for a one-day slice) and
    appends each part to its day's file; `finish` gives the `StagedPartitions` to return
    from the step. A day without rows gets an empty file with the output's columns, as a
    whole-frame write does. Leaving the `with` block on an error deletes every staged file.
    """

    def __init__(self, folder: Path, keys: list[str], compression: str) -> None:
        self.keys = keys
        self.files = {
            key: StagedParquet(
                folder / f"{key}.parquet", folder / f"{key}.parquet.tmp", compression
            )
            for key in keys
        }

    def write(self, frame: pl.DataFrame) -> None:
        for key, part in split_by_day(frame, self.keys):
            if part.height or not self.files[key].started:
                self.files[key].write(part)

    def finish(self) -> StagedPartitions:
        return StagedPartitions(self.files)

    def abort(self) -> None:
        for staged in self.files.values():
            staged.abort()


def split_by_day(frame: pl.DataFrame, keys: list[str]) -> Iterator[tuple[str, pl.DataFrame]]:
    """Each partition key with its rows (an empty frame for a day without rows).

    One day whose rows are all that day (the daily run) is passed through without a copy; a
    range is split in one pass, not one filter per day, so a 90-day backfill does not scan
    the frame 90 times.
    """
    days = frame[PARTITION_COLUMN]
    if len(keys) == 1 and days.null_count() == 0 and (days == date.fromisoformat(keys[0])).all():
        yield keys[0], frame
        return
    parts = frame.partition_by(PARTITION_COLUMN, as_dict=True, maintain_order=True)
    for key in keys:
        yield key, parts.get((date.fromisoformat(key),), frame.clear())


def temporary_name(target: Path) -> Path:
    """A hidden `.tmp` sibling of `target`, unique per writer: never matches a `*.parquet` glob,
    and two writers of one day never share it."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def atomic_write(frame: pl.DataFrame, path: Path, compression: str = "zstd") -> None:
    """Write a temporary file, then rename it over `path`: readers see the old file or the new
    one, never half of one, and a crash leaves no partial file under a readable name."""
    tmp = temporary_name(path)
    try:
        # `compression` is the IO manager's configured text; Polars rejects an unknown codec.
        frame.write_parquet(tmp, compression=cast(ParquetCompression, compression))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

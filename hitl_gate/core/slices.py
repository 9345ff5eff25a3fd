"""Process a day in slices of cases, so a step's memory is bounded by the slice, not the day.

A slice is a row range of a stored stage's scan; Polars reads only the Parquet row groups
that overlap it. A day of at most `slice_rows` cases is one slice read whole, and its output
stays one in-memory frame, exactly the path (and speed) of a whole-frame step. Above that,
each slice's output is appended to the day's file as it is made (`OutputSink`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import polars as pl

from hitl_gate.core.day_files import PartitionWriter, StagedPartitions


def row_count(scan: pl.LazyFrame) -> int:
    """Rows of a stored stage, from the Parquet metadata (no column is read)."""
    return int(scan.select(pl.len()).collect().item())


Item = TypeVar("Item")


def consecutive_groups(
    items: Sequence[Item], weight: Callable[[Item], float], limit: float
) -> list[list[Item]]:
    """`items` cut, in order, into groups whose weights add up to at most `limit` (an item
    heavier than `limit` is a group of its own): what one query, or one pass, may take at
    once, so the memory of a long run of work stays that of one group. Empty: no group."""
    groups: list[list[Item]] = []
    total = 0.0
    for item in items:
        size = weight(item)
        if not groups or total + size > limit:
            groups.append([])
            total = 0.0
        groups[-1].append(item)
        total += size
    return groups


def slice_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each slice of `size` rows covering `total` rows; one if empty."""
    if size < 1:
        raise ValueError(f"slice size must be at least 1 row, got {size}")
    return [(start, min(size, total - start)) for start in range(0, total, size)] or [(0, 0)]


def select_present(frame: pl.LazyFrame, names: Iterable[str]) -> pl.LazyFrame:
    """The scan narrowed to the columns `names` it has, in that order (nothing read yet).

    Columns a partition stored before they existed are left out, as reading the whole frame
    would.
    """
    present = set(frame.collect_schema().names())
    return frame.select([n for n in dict.fromkeys(names) if n in present])


def read_slices(
    scan: pl.LazyFrame, columns: Iterable[str], ranges: list[tuple[int, int]]
) -> Iterator[pl.DataFrame]:
    """The `columns` a stage has (in that order) of each row range of `scan`."""
    chosen = select_present(scan, columns)
    if len(ranges) == 1:
        yield chosen.collect()
        return
    for offset, length in ranges:
        yield chosen.slice(offset, length).collect()


class OutputSink:
    """Where a sliced step puts its output: one frame in memory, or the day's staged files."""

    def __init__(self, writer: PartitionWriter | None) -> None:
        self._writer = writer
        self._frames: list[pl.DataFrame] = []
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        if self._writer is None:
            self._frames.append(frame)
        else:
            self._writer.write(frame)

    def result(self) -> pl.DataFrame | StagedPartitions:
        """What the step returns: the frame, or the staged files the IO manager renames."""
        if self._writer is not None:
            return self._writer.finish()
        if len(self._frames) == 1:
            return self._frames[0]
        return pl.concat(self._frames, how="vertical", rechunk=False)


def write_each(
    slices: Iterable[pl.DataFrame],
    make: Callable[[pl.DataFrame], pl.DataFrame],
    sink: OutputSink,
) -> None:
    """`sink.write(make(s))` for each slice `s`, holding one input slice at a time.

    A plain `for s in slices` keeps the previous slice in `s` while the generator reads the
    next one (and the previous output in whatever held it), so a sliced step held two slices
    at its peak; here each is released before the next is asked for.
    """
    for frame in slices:
        sink.write(make(frame))
        del frame


@contextmanager
def output_sink(new_writer: Callable[[], PartitionWriter], sliced: bool) -> Iterator[OutputSink]:
    """An in-memory sink for a one-slice day, else one writing the day's partition files.

    `new_writer` makes the writer of the step's partition files (only called when sliced).
    Leaving the block on an error removes what was staged; the stored files stay as they were.
    """
    if not sliced:
        yield OutputSink(None)
        return
    with new_writer() as writer:
        yield OutputSink(writer)

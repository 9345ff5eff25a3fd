"""Slices of a frame that check the step under test holds one at a time (test helper)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import polars as pl


class HeldSlices:
    """`rows`-row slices of `frame`, each asserting that every slice yielded before it is gone
    (only weak references kept here), as `core.slices.write_each` promises. `count`: how many
    were read."""

    def __init__(self, frame: pl.DataFrame, rows: int) -> None:
        self.frame, self.rows = frame, rows
        self.earlier: list[weakref.ref[pl.DataFrame]] = []

    @property
    def count(self) -> int:
        return len(self.earlier)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for offset in range(0, self.frame.height, self.rows):
            assert all(ref() is None for ref in self.earlier), "the previous slice is still held"
            part = self.frame.slice(offset, self.rows).rechunk()
            self.earlier.append(weakref.ref(part))
            yield part
            del part  # as `read_slices` does: a slice yielded is not kept here

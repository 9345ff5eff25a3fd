"""The values of a unique column seen in earlier frames of a batch, asked per frame in linear time.

A day is validated a file (and a slice) at a time, and each frame's unique values (the case
id among them) must be checked against every earlier frame's. Checking them with `is_in`
against all earlier values stacked into one Series copied and re-hashed the whole day so far
for each frame: quadratic in the number of files (126 s of a ten-file 10M-case day). Here the
earlier values are kept as they came, chunk by chunk (never copied again), beside their 64-bit
hashes in a few sorted runs: a frame's values are looked up by binary search in each run, and
only values whose hash matches are compared with the earlier values of that hash, exactly, so
a hash collision is never taken for a repeat (the routing's one-route-per-case check reasons
the same way, routing/invariants.py). Runs are merged as in a binary counter (by size class),
so there are O(log n) of them and each hash is re-sorted O(log n) times over the day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

Hasher = Callable[[pl.Series], pl.Series]


def polars_hash(values: pl.Series) -> pl.Series:
    """Polars' 64-bit hash of each value: equal values, equal hashes (within one process)."""
    return values.hash()


@dataclass
class SeenValues:
    """One column's non-null values added so far, in the order added, with sorted hash runs.

    `hasher` is Polars' hash; tests pass a deliberately weak one to force collisions.
    """

    hasher: Hasher = polars_hash
    _values: pl.Series | None = None
    # Each run: `hash` (sorted) and `pos` (the value's place in `_values`).
    _runs: list[pl.DataFrame] = field(default_factory=list)
    # Values from this place on are in no run yet: the newest frame's are sorted only when a
    # later frame is looked up, so a day's last (or only) frame is never hashed or sorted.
    _sorted_upto: int = 0
    # Rows sorted so far, into new runs and by merges: the runs' cost, O(n log n) of n values.
    sorted_rows: int = 0

    def __len__(self) -> int:
        return 0 if self._values is None else self._values.len()

    @property
    def runs(self) -> int:
        """How many sorted runs a lookup searches: O(log n) of the values added."""
        return len(self._runs)

    def repeats(self, values: pl.Series) -> pl.Series:
        """Per value, whether it equals a value added before (False for nulls); then add them.

        Repeats within `values` itself are not marked (`is_first_distinct` tells those).
        """
        repeated = self._earlier_equal(values)
        fresh = values.drop_nulls().rechunk()
        if self._values is None:
            self._values = fresh
        elif fresh.len():
            self._values.append(fresh)  # a chunk more: the earlier values are not copied
        return repeated

    def truncate(self, length: int) -> None:
        """Forget the values added after the first `length` (a failed file takes its own back)."""
        if length >= len(self):
            return
        self._values = self._values.head(length) if length and self._values is not None else None
        kept = (run.filter(pl.col("pos") < length) for run in self._runs)
        self._runs = [run for run in kept if run.height]
        self._sorted_upto = min(self._sorted_upto, length)

    def _earlier_equal(self, values: pl.Series) -> pl.Series:
        """Whether each value equals an earlier one: candidates by hash, then compared exactly."""
        none = pl.Series(values.name, [False] * values.len(), dtype=pl.Boolean)
        if self._values is None or not len(self) or not values.len():
            return none
        self._sort_pending()
        hashes = self.hasher(values)
        matched = pl.concat([_positions_of(run, hashes) for run in self._runs])
        if not matched.len():
            return none
        same_hash = self._values.gather(matched)
        return values.is_in(same_hash.implode()).fill_null(False)

    def _sort_pending(self) -> None:
        """Put the values in no run yet into a sorted run of their own, then merge runs."""
        start, end = self._sorted_upto, len(self)
        if self._values is None or start >= end:
            return
        run = pl.DataFrame(
            {
                "hash": self.hasher(self._values.slice(start)),
                "pos": pl.int_range(start, end, dtype=pl.Int64, eager=True),
            }
        ).sort("hash")
        self._runs.append(run)
        self._sorted_upto = end
        self.sorted_rows += run.height
        # Runs of strictly falling size class (bit length): O(log n) of them, and a value moves
        # to a bigger class at each merge it is on the smaller side of (binary-counter merges).
        while len(self._runs) > 1 and _size_class(self._runs[-2]) <= _size_class(self._runs[-1]):
            newer = self._runs.pop()
            self._runs[-1] = pl.concat([self._runs[-1], newer]).sort("hash")
            self.sorted_rows += self._runs[-1].height


def _size_class(run: pl.DataFrame) -> int:
    return run.height.bit_length()


def _positions_of(run: pl.DataFrame, hashes: pl.Series) -> pl.Series:
    """Positions (in the values added) of the run's entries whose hash is one of `hashes`.

    The hashes are looked up in sorted order, so the binary searches walk the run forward
    (cache-friendly: a third of the CPU of frame order at 200k ids a frame); the end of a
    match's range is searched only for the few hashes found at all."""
    sorted_hashes = run["hash"]
    queries = hashes.drop_nulls().unique().sort()
    first = sorted_hashes.search_sorted(queries, side="left")
    found = first < run.height
    found = found & (sorted_hashes.gather(first.clip(upper_bound=run.height - 1)) == queries)
    if not found.any():
        return pl.Series("pos", [], dtype=pl.Int64)
    last = sorted_hashes.search_sorted(queries.filter(found), side="right")
    ranges = pl.DataFrame({"first": first.filter(found), "last": last})
    at = ranges.select(pl.int_ranges("first", "last").explode())["first"]
    return run["pos"].gather(at)

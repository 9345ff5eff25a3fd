"""A sliced day's decisions inserted in `case_id` order, one transaction per range of ids.

Why: `decisions` keys a case once (`PRIMARY KEY (domain, case_id)` and an index on the
case id), and DuckDB's commit of keys inserted in random order costs several times that of
the same keys sorted (a million decisions: 6.3 CPU s against 1.0, measured in isolation).
`insert_decisions` therefore inserts its rows in `case_id` order, and the seal logs the
decisions in the table's order: so a day routed in slices must insert them in the same
order as the day routed whole, although it meets its cases slice by slice in the validated
order. The day's case ids (held anyway, in the narrow frame of the day) are cut into ranges
of at most about `rows` sorted ids; each slice's decision rows are spilled to their range's
file; at the end each range is read back, sorted and inserted in its own transaction, the
ranges in ascending order. Memory: one range's decisions, the size of one slice's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import OpenConnection, transaction
from hitl_gate.core.staged_parquet import StagedParquet
from hitl_gate.routing.decisions import insert_decisions

_RANGE = "__id_range"


def range_bounds(ids: pl.Series, rows: int) -> pl.Series:
    """The largest id of each range but the last: ranges of `rows` sorted ids (the last may
    be shorter). Equal ids always fall in one range, so a repeated case still meets the key.

    Found through the sort's positions (4 bytes an id), not a sorted copy of the texts.
    """
    if ids.len() <= rows:
        return ids.clear()
    ends = ids.arg_sort().head(ids.len() - 1).gather_every(rows, offset=rows - 1)
    return ids.gather(ends)


class DecisionsByKey:
    """A sliced day's decision rows, inserted in `case_id` order one range at a time.

    When the day's ids already come in their sorted order (the validated order is the ids'
    order, as for ids numbered in arrival order), each slice is such a range: its rows are
    inserted as they come, one transaction per slice, without a spill. Otherwise they are
    spilled to the files of their ranges (`<prefix>-<n>.parquet`, beside the step's other
    spills) and inserted by `finish`. `first` runs in the first transaction, before its
    insert; `abort` removes the range files, whatever happened.
    """

    def __init__(
        self,
        spill_prefix: Path,
        ids: pl.Series,
        rows: int,
        connect: OpenConnection,
        first: Callable[[duckdb.DuckDBPyConnection], None],
    ) -> None:
        texts = ids.cast(pl.String)  # the order of the stored texts, whatever the ids' type
        self.in_order = texts.is_sorted()
        self.bounds = texts.clear() if self.in_order else range_bounds(texts, rows)
        self.spills = [] if self.in_order else [
            StagedParquet(
                spill_prefix.with_name(f"{spill_prefix.name}-{n}.parquet"),
                spill_prefix.with_name(f"{spill_prefix.name}-{n}.tmp"),
                "lz4",
            )
            for n in range(self.bounds.len() + 1)
        ]  # fmt: skip
        self._connect, self._first, self._transactions = connect, first, 0

    def write(self, rows: pl.DataFrame) -> None:
        """Insert decision rows (`decision_rows`) of ids in order, else spill them to the
        files of their ids' ranges."""
        if self.in_order:
            self._insert(rows)
            return
        ranges = self.bounds.search_sorted(rows.get_column("case_id"), side="left")
        parts = rows.with_columns(ranges.alias(_RANGE)).partition_by(
            _RANGE, as_dict=True, include_key=False
        )
        for (number,), part in parts.items():
            self.spills[int(number)].write(part)

    def finish(self) -> None:
        """Insert the spilled ranges, in ascending order, one transaction each; `first` runs
        even when no decision was written."""
        for spill in self.spills:
            if not spill.started:  # a range no slice had a case of: no file, nothing to insert
                continue
            rows = pl.read_parquet(spill.commit())
            self._insert(rows)
            del rows
            spill.target.unlink()
        if self._transactions == 0:
            with self._connect() as con, transaction(con):
                self._first(con)

    def _insert(self, rows: pl.DataFrame) -> None:
        with self._connect() as con, transaction(con):
            if self._transactions == 0:
                self._first(con)
            insert_decisions(con, rows)
        self._transactions += 1

    def abort(self) -> None:
        """Remove every range's file, written or committed."""
        for spill in self.spills:
            spill.abort()
            spill.target.unlink(missing_ok=True)

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
    """Decision rows spilled by range of case ids, then inserted range by range, in order.

    `spill_prefix` names the range files (`<prefix>-<n>.parquet`, beside the step's other
    spills); `abort` removes them, whatever happened.
    """

    def __init__(self, spill_prefix: Path, ids: pl.Series, rows: int) -> None:
        self.bounds = range_bounds(ids.cast(pl.String), rows)
        self.spills = [
            StagedParquet(
                spill_prefix.with_name(f"{spill_prefix.name}-{n}.parquet"),
                spill_prefix.with_name(f"{spill_prefix.name}-{n}.tmp"),
                "lz4",
            )
            for n in range(self.bounds.len() + 1)
        ]

    def write(self, rows: pl.DataFrame) -> None:
        """Spill decision rows (`decision_rows`) to the files of their ids' ranges."""
        ranges = self.bounds.search_sorted(rows.get_column("case_id"), side="left")
        parts = rows.with_columns(ranges.alias(_RANGE)).partition_by(
            _RANGE, as_dict=True, include_key=False
        )
        for (number,), part in parts.items():
            self.spills[int(number)].write(part)
        for spill in self.spills:  # every file knows the schema, even a range left empty
            if not spill.started:
                spill.write(rows.clear())

    def insert(
        self,
        connect: OpenConnection,
        first: Callable[[duckdb.DuckDBPyConnection], None],
    ) -> None:
        """Insert every range, in ascending order, one transaction each; `first` runs in the
        first range's transaction (before its insert), even if that range is empty."""
        for number, spill in enumerate(self.spills):
            rows = pl.read_parquet(spill.commit())
            with connect() as con, transaction(con):
                if number == 0:
                    first(con)
                insert_decisions(con, rows)
            del rows
            spill.target.unlink()

    def abort(self) -> None:
        """Remove every range's file, written or committed."""
        for spill in self.spills:
            spill.abort()
            spill.target.unlink(missing_ok=True)

"""What of the end-of-run seal and the replica refresh grows with the sealed history.

    python -m bench.seal_history DB [DB ...] [--json out]

A 1M-case day sealed on top of earlier days cost more CPU in the pipeline benchmark's repeats
(session 23: 168.7 -> 189.1 -> 200.0 s). Under a shared machine's load the whole step's CPU
varies by ±15% (the segment's own seal, which reads nothing of earlier days, did), so this
measures, on a copy of an audit database, only the work of a run's seal and refresh that
reads every earlier day, each with the code the seal and the refresh run, on a read-only
connection with one DuckDB thread, each twice and the smaller figure kept (the first read
also pays the file's pages into the cache; CPU seconds then barely depend on the load):

- `stamps`: the replica refresh's stamps (`replica._stamps`): every lineage table's rows
  hashed, so a row edited in place after an earlier refresh is never hidden behind a linked
  old Parquet part;
- `unseen <event type>`: the seal's sweep (`events.SourceSlices.find_unseen`: every row's
  fingerprint, less those seen) of each table it reads whole every run: the insert-once
  tables of the single chain (each run's end-of-run seal, and the executions stage's own
  seal of `executions` and `adverse_actions`), and the versioned tables without a partition
  day, which the pick reads whole (`run_seal.pick_rows`: a day-partitioned table's pick reads
  the run's days only). This is how an edited, deleted or stray row is found by the next
  seal, whatever day it belongs to.

Run it on databases holding one day and several days: the difference divided by the extra
days is the CPU per day of history that a run pays for these checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from bench.measure import cpu_seconds
from hitl_gate.audit.events import EventSource, SourceSlices, table_columns
from hitl_gate.audit.replica import SEGMENT_LOG, _columns, _stamps, lineage_tables
from hitl_gate.audit.run_seal import CHAIN_SOURCES, SEGMENT_SOURCES
from hitl_gate.audit.seal import BATCH_ROWS


@dataclass(frozen=True)
class Cost:
    """One history-wide check: the rows it read and its CPU seconds (one DuckDB thread)."""

    rows: int
    cpu_s: float


def _whole_table_sources(
    con: duckdb.DuckDBPyConnection,
) -> list[tuple[EventSource, list[tuple[str, str]]]]:
    """The sources a run's seals sweep whole, with their columns: every insert-once table, and
    the versioned ones without a `partition_date` (the pick scopes day-partitioned tables)."""
    shapes = table_columns(con, [s.table for s in (*CHAIN_SOURCES, *SEGMENT_SOURCES)])
    dayless = [s for s in SEGMENT_SOURCES if "partition_date" not in dict(shapes.get(s.table, []))]
    return [(s, shapes[s.table]) for s in (*CHAIN_SOURCES, *dayless) if s.table in shapes]


def history_costs(con: duckdb.DuckDBPyConnection) -> dict[str, Cost]:
    """The checks of the module docstring on `con` (sources with no rows left out)."""
    con.execute("SET threads = 1")
    costs: dict[str, Cost] = {}
    tables = [t for t in lineage_tables(con) if t != SEGMENT_LOG]
    counts = dict(
        con.execute(
            " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in tables)
        ).fetchall()
    )
    columns = _columns(con, tables)
    costs["stamps"] = Cost(
        sum(int(n) for n in counts.values()), _warm_cpu(lambda: _stamps(con, tables, {}, columns))
    )
    for source, shape in _whole_table_sources(con):
        if counts.get(source.table):
            slices = SourceSlices(con, source, BATCH_ROWS, columns=shape)
            try:
                spent = _warm_cpu(slices.find_unseen)
            finally:
                slices.close()
            costs[f"unseen {source.event_type}"] = Cost(int(counts[source.table]), spent)
    return costs


def _warm_cpu(work: Callable[[], object]) -> float:
    """The CPU seconds of `work`'s second run (the first pays the file's pages in)."""
    work()
    started = cpu_seconds()
    work()
    return cpu_seconds() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seal_history", description=__doc__)
    parser.add_argument("databases", type=Path, nargs="+", help="audit.duckdb files (copies)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures = {}
    for path in args.databases:
        with duckdb.connect(str(path), read_only=True) as con:
            costs = history_costs(con)
        figures[str(path)] = {name: asdict(cost) for name, cost in costs.items()}
        sys.stdout.write(f"{path}\n")
        for name, cost in costs.items():
            sys.stdout.write(f"  {name:<32} {cost.rows:>12,} rows {cost.cpu_s:8.2f} CPU s\n")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Routing a day in slices of cases: memory bounded by the slice, output equal to the whole day's.

Why: as whole frames, the routed day is 87 columns, about 3 GB per million cases while it is
made; at ten million it does not fit. Routing itself (`route_cases`) is per case, but three
things are day-wide: the QA sample (ranks within a stratum), reviewer capacity (ranks within
a queue, with the backlog) and the carried copies capacity adds. So:

1. per slice: join the slice's validated rows, features and scores; route; spill the columns
   routing added (`route_cases`' dozen) to a temporary Parquet file and keep only the
   `finish_inputs` columns (a dozen);
2. once, on that narrow frame of the whole day: QA sampling, kill switch, capacity
   (`finish_decisions`), exactly as for a whole day;
3. per slice again: join the slice's cases again, put the spilled route columns and the
   narrow result's columns on them, write the rows to the day's file and hand their
   decisions to `routing.key_order`; then the carried copies, kept from the slices that hold
   them or taken from the backlog;
4. the decisions reach the audit database in `case_id` order, the order the whole day's
   insert has, one transaction per range of ids: each slice's as it comes when the day's
   ids come sorted, else spilled by range in step 3 and inserted at the end.

The wide routed rows (87 columns at scale) are written once, to the day's file. Spilling them
whole between the passes cost a second Parquet write of every row and a read of it (at ten
million cases the spill's write alone took as long as the output's, 212 against 204 s of
the step's 942); the stored stages they are joined from are read again instead, which is
what the spill's read cost, and only the route columns are spilled.

The decisions are idempotently resumable rather than all-or-nothing: the first range's
transaction removes the run's days' earlier decisions (and records the policy version), each
later one adds its range. A run killed in between leaves those days with part of their new
decisions and no day file (the staged files are removed, so the step did not materialise);
the next run of the days routes them again and replaces every decision of them, so none is
lost or doubled (`decisions` keys a case once). One transaction of ten million decisions kept
the whole uncommitted insert (and its index entries) in memory; a range's is bounded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import OpenConnection
from hitl_gate.core.day_files import PartitionWriter, StagedPartitions
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import output_sink
from hitl_gate.core.staged_parquet import StagedParquet
from hitl_gate.routing.cases import Scans, assemble_slice
from hitl_gate.routing.decisions import (
    decision_rows,
    delete_decisions,
    raise_for_policy_errors,
    record_policy_version,
)
from hitl_gate.routing.key_order import DecisionsByKey
from policies.decide import finish_decisions, finish_inputs
from policies.engine import route_cases
from policies.model import Policy

_CASE_ROW = "__case_row"
_BACKLOG_ROW = "__backlog_row"


@dataclass
class SlicedRouting:
    """What the step returns (the staged day files) and the narrow decided frame (metadata)."""

    output: pl.DataFrame | StagedPartitions
    decided: pl.DataFrame


def route_in_slices(
    domain: DomainConfig,
    policy: Policy,
    scans: Scans,
    connect: OpenConnection,
    folder: Path,
    new_writer: Callable[[], PartitionWriter],
    ranges: list[tuple[int, int]],
    *,
    halted: bool,
    backlog: pl.DataFrame,
    run_id: str,
    days: list[date],
) -> SlicedRouting:
    """Route the day slice by slice (see the module docstring); decisions go to the audit DB.

    `folder` is the stage's own folder (the spills are made there, beside the day files);
    `new_writer` makes the writer of the day files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spill_path = folder / f".routing-spill-{uuid.uuid4().hex}.parquet"
    spill = StagedParquet(spill_path, spill_path.with_suffix(".tmp"), "lz4")
    keyed: DecisionsByKey | None = None
    try:
        narrow = []
        added_by_routing: list[str] = []
        for number, (offset, length) in enumerate(ranges):
            cases = assemble_slice(domain, scans, offset, length)
            if number == 0:  # schema and policy analysis: the same for every slice
                raise_for_policy_errors(policy, cases)
            routed = route_cases(policy, cases).with_columns(
                pl.col("route").alias("proposed_route")
            )
            added_by_routing = added_by_routing or [
                c for c in routed.columns if c not in cases.columns
            ]
            del cases
            spill.write(routed.select(added_by_routing))
            narrow.append(
                routed.select(finish_inputs(policy, domain.case_id)).with_columns(
                    pl.int_range(offset, offset + routed.height, dtype=pl.Int64).alias(_CASE_ROW)
                )
            )
            del routed
        spill.commit()
        day = pl.concat(narrow, how="vertical").with_columns(
            pl.lit(None, pl.Int64).alias(_BACKLOG_ROW)
        )
        del narrow
        keyed_backlog = (
            backlog.with_row_index(_BACKLOG_ROW).with_columns(pl.col(_BACKLOG_ROW).cast(pl.Int64))
            if backlog.height
            else backlog
        )
        decided = finish_decisions(
            policy, day, domain.case_id, halted=halted, backlog=keyed_backlog
        )
        added = [c for c in decided.columns if c not in day.columns]
        own, carried = decided.head(day.height), decided.slice(day.height)
        if not own.get_column(_CASE_ROW).is_sorted():  # positions must match the spill's rows
            own = own.sort(_CASE_ROW)
        del day
        now = datetime.now(UTC)

        def replace_days(con: duckdb.DuckDBPyConnection) -> None:
            """The days' earlier decisions go, in the first insert's transaction."""
            record_policy_version(con, domain, policy, now)
            delete_decisions(con, domain, days)

        keyed = DecisionsByKey(
            spill_path.with_name(f"{spill_path.stem}-decisions"),
            own.get_column(domain.case_id),
            ranges[0][1],
            connect,
            replace_days,
        )
        stored = pl.scan_parquet(spill_path)
        wanted = carried.get_column(_CASE_ROW).drop_nulls().implode()
        held = []  # the run's own cases that capacity carries: their rows before `finish`
        # Inside the sink's block: if an audit write fails, the staged day files go too.
        with output_sink(new_writer, True) as sink:
            columns = None
            # Each slice read in the loop's body, not taken from a generator through `zip`:
            # `zip` and `enumerate` keep their last tuple, and with it the previous slice,
            # until the next slice is read, so two slices of 87 columns were held at once.
            for offset, length in ranges:
                cases = assemble_slice(domain, scans, offset, length)
                cases.hstack(stored.slice(offset, length).collect().get_columns(), in_place=True)
                held.append(
                    cases.with_row_index(_CASE_ROW, offset)
                    .with_columns(pl.col(_CASE_ROW).cast(pl.Int64))
                    .filter(pl.col(_CASE_ROW).is_in(wanted))
                )
                routed = cases.with_columns(
                    own.slice(offset, length).select(
                        "route", "route_reason_code", "review_queue", "review_priority", *added
                    )
                )
                del cases
                columns = columns or routed.schema
                decisions = decision_rows(domain, routed, run_id, now)
                sink.write(routed)
                # Freed before the decisions are inserted: the insert (DuckDB's copy of the
                # rows and their index entries) then runs beside the decisions' 34 columns,
                # not beside all 87 of the slice (at 2M cases the step's peak was there).
                del routed
                keyed.write(decisions)
                del decisions
            if carried.height:
                rows = pl.concat(held, how="vertical")
                del held
                sink.write(_carried_rows(carried, rows, keyed_backlog, columns, added))
            keyed.finish()
            output = sink.result()
        return SlicedRouting(output=output, decided=decided.drop(_CASE_ROW, _BACKLOG_ROW))
    finally:
        spill.abort()
        spill.target.unlink(missing_ok=True)
        if keyed is not None:
            keyed.abort()


def _carried_rows(
    carried: pl.DataFrame,
    rows: pl.DataFrame,
    backlog: pl.DataFrame,
    schema: pl.Schema | None,
    added: list[str],
) -> pl.DataFrame:
    """The full rows of the carried copies, in `carried`'s order: run cases then backlog.

    Their route columns come from `rows` (the run's carried cases as routed, before
    `finish_decisions`, keyed by `_CASE_ROW`) or the backlog row; what capacity set (day,
    carried-from, review day) comes from `carried`, as `apply_capacity` does.
    """
    assert schema is not None
    own = carried.filter(pl.col(_CASE_ROW).is_not_null())
    waiting = carried.filter(pl.col(_CASE_ROW).is_null())
    parts = [own.select(_CASE_ROW).join(rows, on=_CASE_ROW, how="left", maintain_order="left")]
    if waiting.height:
        parts.append(
            waiting.select(_BACKLOG_ROW).join(
                backlog.select([c for c in (_BACKLOG_ROW, *schema) if c in backlog.columns]),
                on=_BACKLOG_ROW,
                how="left",
                maintain_order="left",
            )
        )
    full = pl.concat(parts, how="diagonal_relaxed")
    base = [c for c in schema if c not in added]
    full = full.select([pl.col(c) if c in full.columns else pl.lit(None).alias(c) for c in base])
    overrides = carried.select(
        "partition_date", "route", "route_reason_code", "review_queue", "review_priority", *added
    )
    return full.with_columns(overrides).select(list(schema)).cast(schema)

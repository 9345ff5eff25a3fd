"""The outcome flags `decision_metrics` joins on, read from the outcome files by DuckDB.

`models.outcomes.read_outcomes` reads every outcome file of the domain into one Polars frame
(all of history: one row per observed case), which the asset then registered with DuckDB for
one join. At a million cases a day that frame and its de-duplicated copy added about 230 MB
per million outcome rows to the step's peak, and stayed resident for the whole evaluation.
Here DuckDB reads the files (on a connection allowed those files alone) and streams them into
a temporary table of the audit connection under its memory limit (it spills), keeping only
the cases of the facts the metrics judge: nothing day-sized is held in Python.

The flags are exactly `outcome_flags(read_outcomes(...))`'s for those cases (tested on files
with repeats within and across files, missing and quoted-empty labels, a file without the
label column): the files are read as text in name order, by column name, and the last row of
a case (by file, then by row) wins; `bad` is null where the label is null, as Polars' `is_in`
gives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from hitl_gate.core.database import registered, restrict_to_directories
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.quiet_duckdb import quiet_connect
from hitl_gate.observability.facts import METRIC_FACTS, sql_identifier, sql_literal

OUTCOMES = "metric_outcomes"  # (case_id, bad): what `metrics_db`'s outcome metrics join on
BATCH_ROWS = 100_000  # rows per Arrow batch from the files' reader to the audit connection


@dataclass(frozen=True)
class OutcomeFiles:
    """A domain's outcome files, to be read by DuckDB (`models.outcomes.outcome_files`)."""

    files: tuple[Path, ...]
    case_id: str
    label: str
    positive_values: tuple[str, ...]

    @classmethod
    def of(cls, landing_root: Path, domain: DomainConfig) -> OutcomeFiles:
        from models.outcomes import outcome_files

        label = domain.model.label
        return cls(
            tuple(outcome_files(landing_root, domain)),
            domain.case_id,
            label.column,
            tuple(label.positive_values),
        )


def _numbered(batches: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """`batches` with a column `pos`: each row's place in the stream, counted as it passes."""
    schema = batches.schema.append(pa.field("pos", pa.int64()))

    def numbered() -> Iterator[pa.RecordBatch]:
        start = 0
        for batch in batches:  # numpy's range: no Python int per row
            positions = np.arange(start, start + batch.num_rows, dtype=np.int64)
            yield batch.append_column("pos", pa.array(positions))
            start += batch.num_rows

    return pa.RecordBatchReader.from_batches(schema, numbered())


def _load_files(con: duckdb.DuckDBPyConnection, source: OutcomeFiles) -> None:
    """`metric_outcomes` of the facts' cases from the files (see the module docstring).

    The audit connection may read no file but the warehouse's (`core.database`: no SQL on it
    reads a key or the token), so a connection of its own, allowed these files and nothing
    else, parses them and streams the rows over in Arrow batches: nothing day-sized is held
    in Python. That connection reads on one thread, so its batches come in the files' order,
    each from its first row, and each batch's rows are numbered as they pass (`pos`, `_numbered`:
    no window over the files, which would hold them all); the last observation of a case is
    then chosen by `pos` on the audit side, whatever order its parallel scan and filter keep:
    `arg_max_null(label, pos)` per case, a hash aggregate as the rows stream in (a null label
    included: `bad` null), where a filtered copy and a window sorting it by case and `pos`
    cost 0.45 CPU s more at 1M outcome rows.
    (Relying on `preserve_insertion_order` instead gave the first observation now and then on
    a 600-row test.) The CSV dialect is
    pinned (comma, double quotes, a header) rather than sniffed, and a quoted empty field
    stays an empty string, as Polars reads them.
    """
    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    files = "[" + ", ".join(sql_literal(str(f)) for f in source.files) + "]"
    positives = ", ".join(sql_literal(v) for v in source.positive_values) or "NULL"
    reader = quiet_connect()
    try:
        restrict_to_directories(reader, [], [str(f) for f in source.files])
        reader.execute(f"SET memory_limit = {sql_literal(str(limit))}")
        reader.execute("SET threads = 1")  # one scan, batches in the files' order
        rows = reader.sql(
            f"SELECT {sql_identifier(source.case_id)} AS case_id, "
            f"{sql_identifier(source.label)} AS label "
            f"FROM read_csv({files}, delim = ',', quote = '\"', escape = '\"', header = true, "
            "all_varchar = true, union_by_name = true, allow_quoted_nulls = false)"
        ).to_arrow_reader(BATCH_ROWS)
        with registered(con, "outcome_file_rows", _numbered(rows)):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {OUTCOMES} AS "
                f"SELECT case_id, arg_max_null(label, pos) IN ({positives}) AS bad "
                f"FROM outcome_file_rows WHERE case_id IN (SELECT case_id FROM {METRIC_FACTS}) "
                "GROUP BY case_id"
            )
    finally:
        reader.close()


@contextmanager
def metric_outcomes(
    con: duckdb.DuckDBPyConnection, source: pl.DataFrame | OutcomeFiles | None
) -> Iterator[bool]:
    """`metric_outcomes` (case_id, bad) on `con` for the block; yields whether any case of the
    facts has an outcome source at all (False: no outcome metrics, nothing loaded).

    A frame (case_id, bad) is registered as it is; `OutcomeFiles` are read by DuckDB, which
    needs the facts (`facts.case_facts`) loaded on `con`. Gone after the block.
    """
    if source is None or (isinstance(source, pl.DataFrame) and source.height == 0):
        yield False
    elif isinstance(source, pl.DataFrame):
        with registered(con, OUTCOMES, source.select("case_id", "bad").to_arrow()):
            yield True
    elif not source.files:
        yield False
    else:
        try:
            _load_files(con, source)
            yield True
        finally:
            con.execute(f"DROP TABLE IF EXISTS {OUTCOMES}")

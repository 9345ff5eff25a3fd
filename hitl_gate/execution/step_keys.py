"""The entity keys the execution step may seal, kept in its own DuckDB connection.

The output seal (`sealed_inputs.output_sealer`) logs an `executions` or `adverse_actions` row
only if the step wrote it: its entity key must be one the step executed (inserted now, or an
earlier run's row whose action the step computes too, `execute.agreeing`). Those keys used to
be gathered into one Arrow array of the whole day, and the seal re-hashed that array for every
slice it sealed (`pyarrow.compute.is_in`): about 0.4 GB and 0.5 CPU s per million keys per
slice at 10M cases. Here each slice's keys go into a temporary table of the step's connection
as the slice is executed, and the seal asks, slice by slice, which of *its* keys are in it: a
semi-join in DuckDB (under the seal's memory limit, spilled if need be) whose answer is at most
a seal slice long. No key array spans the day in Python.

A temporary table belongs to its connection alone: no other connection, and no other process
(DuckDB's file lock), can add a key to it. It proves exactly what the array did.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from hitl_gate.core.database import registered

_TABLE = "execution_step_keys"


class StepKeys:
    """The keys (`<domain>/<case id>`) of the executions this step wrote, slice by slice.

    `add` records a slice's case ids; `owns` answers the seal's question for one seal slice
    (`audit.seal.OwnedKeys`: a callable from entity keys to a mask of the owned ones).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, domain: str) -> None:
        self.con, self.prefix = con, f"{domain}/"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_TABLE} (entity_key VARCHAR)")

    def add(self, case_ids: pl.Series) -> None:
        """Record the entity keys of `case_ids` (a slice's, as text) as the step's."""
        if case_ids.len() == 0:
            return
        keys = pl.DataFrame({"case_id": case_ids.cast(pl.String)}).to_arrow()
        with registered(self.con, "step_slice_keys", keys):
            self.con.execute(
                f"INSERT INTO {_TABLE} SELECT $prefix || case_id FROM step_slice_keys",
                {"prefix": self.prefix},
            )

    def owns(self, entity_keys: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Which of `entity_keys` (a seal slice's) the step wrote: a boolean mask.

        DuckDB returns the positions of the slice's keys that the table holds (a semi-join
        probed by the slice), so what comes back is at most a seal slice long, never the day.
        """
        asked = pa.table(
            {"i": np.arange(len(entity_keys), dtype=np.int64), "entity_key": entity_keys}
        )
        with registered(self.con, "step_asked_keys", asked):
            found = self.con.sql(
                f"SELECT a.i FROM step_asked_keys a SEMI JOIN {_TABLE} s "
                "ON s.entity_key = a.entity_key"
            ).fetchnumpy()["i"]
        mask = np.zeros(len(entity_keys), dtype=bool)
        mask[np.asarray(found, dtype=np.int64)] = True
        return pa.array(mask)

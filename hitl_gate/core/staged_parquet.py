"""One Parquet file written slice by slice under a temporary name, renamed into place at the end.

Why: a step that processes its day in slices of cases (so its memory is bounded by the slice,
not by the day) still has to leave exactly one file per day behind, as a whole-frame write
does. Each slice becomes one or more row groups of the same file; readers never see the file
until `commit` renames it over the target, and an aborted write leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from hitl_gate.core.arrow_export import arrow_table

# Polars' compression names as pyarrow spells them.
_PYARROW_COMPRESSION = {"uncompressed": "none"}
# Rows per row group, Polars' default (512^2): a reader of a row range or of one row decodes
# row groups of this size, not of a million rows (pyarrow's default).
ROW_GROUP_ROWS = 262_144


class AbortsOnError:
    """A writer used as `with w:` that calls its `abort` when the block raises.

    Staged outputs must leave nothing behind on an error; committing stays explicit, so a
    block that ends normally without committing keeps its staged files for the caller.
    """

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.abort()


class StagedParquet(AbortsOnError):
    """Append frames to `tmp`, then `commit` (rename to `target`) or `abort` (delete)."""

    def __init__(self, target: Path, tmp: Path, compression: str = "lz4") -> None:
        self.target, self.tmp = target, tmp
        self.compression = _PYARROW_COMPRESSION.get(compression, compression)
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, frame: pl.DataFrame) -> None:
        """Append `frame` as row groups; the first frame (even empty) fixes the file's schema."""
        # Polars' own Arrow types (string views), each column's chunks as they are: no copy.
        table = arrow_table(frame)
        if self._schema is None:
            self._schema = table.schema
        elif table.schema != self._schema:
            # Same columns and Polars types; Arrow may differ in details (e.g. string views).
            table = table.cast(self._schema)
        if table.num_rows == 0:
            return
        if self._writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, self._schema, compression=self.compression)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    @property
    def started(self) -> bool:
        """Whether a schema is known (a frame, possibly empty, was written)."""
        return self._schema is not None

    def commit(self) -> Path:
        """Close the file and rename it over the target; an empty file if no row came."""
        if self._schema is None:
            raise ValueError(f"nothing was written for {self.target}: the schema is unknown")
        if self._writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(self._schema.empty_table(), self.tmp, compression=self.compression)
        else:
            self._writer.close()
            self._writer = None
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        """Close and delete the temporary file; the target keeps its previous content."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)

"""A Polars frame as an Arrow table without a copy, however its columns are cut into chunks.

Why: `DataFrame.to_arrow()` builds Arrow record batches, which need every column cut at the
same rows; a frame whose columns come from different places (a routed slice: the validated
rows, features and scores read from their stages, the route columns spilled between the
passes, the day's narrow result) has them cut at different rows, and Polars first copies
every misaligned column into one piece. At a million routed cases that copy was 0.3-0.7 GB
beside the slice, while its day file was written and while its decisions were inserted. An
Arrow table keeps each column's own pieces (one `ChunkedArray` per column): exported chunk
by chunk, nothing is copied, and Parquet writers and DuckDB read such a table as it is.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa


def arrow_table(frame: pl.DataFrame) -> pa.Table:
    """`frame` as Arrow with Polars' own types (string views: no copy of the texts either),
    each column keeping its chunks."""
    compat = pl.CompatLevel.newest()
    columns = []
    for series in frame.get_columns():
        chunks = [part.to_arrow(compat_level=compat) for part in series.get_chunks()]
        columns.append(pa.chunked_array(chunks, type=chunks[0].type))
    return pa.Table.from_arrays(columns, names=frame.columns)

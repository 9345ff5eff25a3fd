"""One partition file of a Feast source: conformed to its exact schema, replaced atomically.

Both views of a domain (the application features, `features.store`, and the applicant history,
`features.history`) keep one Parquet file per partition day; this is how either file is
written. No Feast import here.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hitl_gate.core.day_files import atomic_write


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """`frame`'s columns of `schema`, cast, in its order; an error naming any missing one."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def write_partition(frame: pl.DataFrame, schema: dict[str, pl.DataType], target: Path) -> Path:
    """Replace `target` with `frame` in its exact schema (`core.day_files.atomic_write`).

    A rerun of the day replaces its rows instead of duplicating them; the temporary name does
    not match the source glob, so an interrupted write is never read.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(conform(frame, schema), target)
    return target

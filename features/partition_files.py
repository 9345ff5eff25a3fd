"""One partition file of a Feast source: conformed to its exact schema, replaced atomically.

Both views of a domain (the application features, `features.store`, and the applicant history,
`features.history`) keep one Parquet file per partition day; this is how either file is
written. No Feast import here.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """`frame`'s columns of `schema`, cast, in its order; an error naming any missing one."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def temporary_name(target: Path) -> Path:
    """A hidden `.tmp` sibling of `target`, unique per writer; never matches the source glob."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def write_partition(frame: pl.DataFrame, schema: dict[str, pl.DataType], target: Path) -> Path:
    """Write a temporary file, then rename it over `target`.

    Readers see the old file or the new one, never half of one, and a rerun of the day
    replaces its rows instead of duplicating them. The temporary name does not match the
    source glob, so an interrupted write is never read.
    """
    frame = conform(frame, schema)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target

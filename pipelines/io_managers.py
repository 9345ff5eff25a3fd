"""Partition-aware Parquet storage for the Polars frames that flow between assets.

One file per asset and daily partition (`<base>/<asset path>/<YYYY-MM-DD>.parquet`), so a run
over a range of days (single-run backfill) and a run over one day read and write the same
files. Every partitioned frame carries a `partition_date` column that says which file a row
belongs to.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import polars as pl
from dagster import ConfigurableIOManager, InputContext, OutputContext

PARTITION_COLUMN = "partition_date"


class PolarsParquetIOManager(ConfigurableIOManager):
    """Stores asset outputs as Parquet under `base_dir`, one file per daily partition."""

    base_dir: str

    def _asset_dir(self, context: OutputContext | InputContext) -> Path:
        return Path(self.base_dir).joinpath(*context.asset_key.path)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        folder = self._asset_dir(context)
        folder.mkdir(parents=True, exist_ok=True)
        if not context.has_asset_partitions:
            _atomic_write(obj, folder / "all.parquet")
            return
        for key in context.asset_partition_keys:
            day = date.fromisoformat(key)
            _atomic_write(obj.filter(pl.col(PARTITION_COLUMN) == day), folder / f"{key}.parquet")

    def load_input(self, context: InputContext) -> pl.DataFrame:
        folder = self._asset_dir(context)
        if not context.has_asset_partitions:
            return pl.read_parquet(folder / "all.parquet")
        paths = [folder / f"{key}.parquet" for key in context.asset_partition_keys]
        present = [p for p in paths if p.exists()]
        if not present:
            raise FileNotFoundError(
                f"no stored output for {context.asset_key.to_user_string()} in partitions "
                f"{context.asset_partition_keys[0]}..{context.asset_partition_keys[-1]}: "
                "materialise it first"
            )
        return pl.concat([pl.read_parquet(p) for p in present], how="diagonal_relaxed")


def _atomic_write(frame: pl.DataFrame, path: Path) -> None:
    """Write then rename, so a crash never leaves a half-written partition behind."""
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)

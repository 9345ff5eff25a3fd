"""Partition-aware Parquet storage for the Polars frames that flow between assets.

One file per asset and daily partition (`<base>/<asset path>/<YYYY-MM-DD>.parquet`), so a run
over a range of days (single-run backfill) and a run over one day read and write the same
files. Every partitioned frame carries a `partition_date` column that says which file a row
belongs to.

An input annotated `pl.LazyFrame` is not read: it is a scan of the stored files, so the step
reads only the columns and rows it asks for. At a million cases the routed decisions are 87
columns and about 1 GB in memory, and most readers need a handful of columns or the reviewed
rows only; reading them whole was most of those steps' memory and time.

A step that processes its day in slices (`slice_rows` cases at a time, see `assets.slices`)
returns `StagedPartitions` instead of a frame: the day's file written slice by slice under a
temporary name (`PartitionWriter`), renamed into place here. Readers see the same one file
per day either way.

Every stored frame reports its row count (`dagster/row_count`) and its columns with their types
(`dagster/column_schema`), so the Dagster UI shows each stage's table and size. A run over a
range of days stores one materialisation per day, and Dagster copies an output's metadata into
each of them: the schema (87 columns for the routed decisions, about 17 KB serialised and 1 ms
of CPU per event) was written about 2,000 times by the demo's runs. It goes on the range's last
day only (`schema_metadata`): the newest materialisation, whose schema the UI shows on the asset,
and a one-day run carries it as before; the other days keep their row count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from dagster import (
    ConfigurableIOManager,
    InputContext,
    OutputContext,
    TableColumn,
    TableSchema,
)

from hitl_gate.core.day_files import (
    PartitionWriter,
    StagedPartitions,
    atomic_write,
    split_by_day,
)
from hitl_gate.core.settings import DEFAULT_SLICE_ROWS


class PolarsParquetIOManager(ConfigurableIOManager):
    """Stores asset outputs as Parquet under `base_dir`, one file per daily partition.

    `compression` defaults to LZ4: these files are hand-offs between steps, read once or twice,
    and at 1M cases LZ4 wrote the widest frame (routed decisions, 85 columns) in 3.8 s against
    6.3 s for Polars' default zstd, reading as fast (BENCHMARKS.md, Pipeline).
    """

    base_dir: str
    compression: Literal["lz4", "zstd", "snappy", "uncompressed"] = "lz4"
    # The most cases a sliced step (features, scores, routing) holds at once: its memory is
    # bounded by this, not by the day. A day of at most this many cases runs as one frame.
    # Deployment configuration (`HITL_SLICE_ROWS`): a smaller machine takes smaller slices.
    slice_rows: int = DEFAULT_SLICE_ROWS

    def _asset_dir(self, context: OutputContext | InputContext) -> Path:
        return Path(self.base_dir).joinpath(*context.asset_key.path)

    def partition_writer(self, asset_path: list[str], keys: list[str]) -> PartitionWriter:
        """A writer for a sliced step's output: asset `asset_path`, partition keys `keys`."""
        folder = Path(self.base_dir).joinpath(*asset_path)
        return PartitionWriter(folder, keys, self.compression)

    def handle_output(
        self, context: OutputContext, obj: pl.DataFrame | StagedPartitions | None
    ) -> None:
        if obj is None:
            return
        if isinstance(obj, StagedPartitions):
            obj.commit()
            written = [f.target for f in obj.files.values() if f.target.exists()]
            if written:
                schema = pl.read_parquet_schema(written[0])
                add_table_metadata(context, schema, obj.rows)
            return
        folder = self._asset_dir(context)
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pl.DataFrame):
            add_table_metadata(context, obj.schema, obj.height)
        if not context.has_asset_partitions:
            atomic_write(obj, folder / "all.parquet", self.compression)
            return
        for key, part in split_by_day(obj, context.asset_partition_keys):
            atomic_write(part, folder / f"{key}.parquet", self.compression)

    def load_input(self, context: InputContext) -> pl.DataFrame | pl.LazyFrame:
        paths = self._stored_paths(context)
        if wants_lazy(context):
            scans = [pl.scan_parquet(p) for p in paths]
            return scans[0] if len(scans) == 1 else pl.concat(scans, how="diagonal_relaxed")
        frames = [pl.read_parquet(p) for p in paths]
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def _stored_paths(self, context: InputContext) -> list[Path]:
        folder = self._asset_dir(context)
        if not context.has_asset_partitions:
            return [folder / "all.parquet"]
        paths = [folder / f"{key}.parquet" for key in context.asset_partition_keys]
        present = [p for p in paths if p.exists()]
        if not present:
            raise FileNotFoundError(
                f"no stored output for {context.asset_key.to_user_string()} in partitions "
                f"{context.asset_partition_keys[0]}..{context.asset_partition_keys[-1]}: "
                "materialise it first"
            )
        return present


def table_metadata(schema: pl.Schema | dict[str, pl.DataType], rows: int) -> dict[str, object]:
    """Dagster's table metadata for a stored frame: row count and column names with types."""
    return {"dagster/row_count": rows, **schema_metadata(schema)}


def schema_metadata(schema: pl.Schema | dict[str, pl.DataType]) -> dict[str, object]:
    """Dagster's column schema metadata: the frame's column names with their types."""
    columns = [TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    return {"dagster/column_schema": TableSchema(columns=columns)}


def add_table_metadata(
    context: OutputContext, schema: pl.Schema | dict[str, pl.DataType], rows: int
) -> None:
    """Report the stored frame's row count, and its schema on the last day of a range only.

    One day (or no partitions): both on the output, as `table_metadata` gives them. A range:
    the row count on the output (every day's materialisation), the schema as metadata of the
    last day's materialisation alone, the one the UI shows as the asset's latest.
    """
    keys = context.asset_partition_keys if context.has_asset_partitions else []
    if len(keys) <= 1:
        context.add_output_metadata(table_metadata(schema, rows))
        return
    context.add_output_metadata({"dagster/row_count": rows})
    context.step_context.add_asset_metadata(
        schema_metadata(schema), asset_key=context.asset_key, partition_key=keys[-1]
    )


def wants_lazy(context: InputContext) -> bool:
    """Whether the step annotated this input as `pl.LazyFrame` (a scan, read on demand)."""
    try:
        return context.dagster_type.typing_type is pl.LazyFrame
    except Exception:  # noqa: BLE001 - no type known (e.g. loaded outside a step): read it
        return False

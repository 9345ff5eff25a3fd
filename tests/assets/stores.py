"""A tmp_path store for asset-level tests: upstream stages written as the IO manager stores them.

The stage assets under test run for real with `dagster.materialize` on an ephemeral instance;
their upstream stages are declared as `AssetSpec`s (same keys, same daily partitions) whose
partition files this helper writes, so nothing upstream is computed.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from dagster import AssetSpec

from assets.common import stage_key
from assets.partitions import daily_partitions
from hitl_gate.core.day_files import atomic_write, split_by_day
from hitl_gate.core.domain import DomainConfig
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import AuditDatabase, ExecutionOutbox, LandingZone


def upstream_specs(domain: DomainConfig, *stages: str) -> list[AssetSpec]:
    """Stand-ins for the stages feeding the asset under test (stored, not computed)."""
    return [
        AssetSpec(stage_key(domain, s), partitions_def=daily_partitions(domain)) for s in stages
    ]


def store_stage(
    warehouse: Path, domain: DomainConfig, stage: str, frame: pl.DataFrame, keys: list[str]
) -> None:
    """Write `frame` as the stage's partition files, one per day in `keys`."""
    folder = warehouse.joinpath(*stage_key(domain, stage).path)
    folder.mkdir(parents=True, exist_ok=True)
    for key, part in split_by_day(frame, keys):
        atomic_write(part, folder / f"{key}.parquet", "lz4")


def resources(home: Path, slice_rows: int = 1000) -> dict[str, object]:
    """The resources these stages use, all under `home`."""
    return {
        "io_manager": PolarsParquetIOManager(
            base_dir=str(home / "warehouse"), slice_rows=slice_rows
        ),
        "audit_db": AuditDatabase(
            database=str(home / "audit.duckdb"),
            checkpoint_dir=str(home / "checkpoints"),
            signing_key_file=str(home / "secrets" / "audit.key"),
        ),
        "outbox": ExecutionOutbox(root=str(home / "outbox")),
        "landing": LandingZone(root=str(home / "landing")),
    }

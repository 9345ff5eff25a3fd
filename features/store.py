"""Open a domain's Feast store, write feature partitions and retrieve features point in time.

Feast is imported inside the functions that need it (about 13 s), so writing partitions and
importing this module stay cheap for the CLI and Dagster code locations.
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from features.config import feature_source_dir, feature_store_config, write_feature_store_yaml
from features.engineering import (
    EVENT_TIMESTAMP,
    FEATURE_DTYPE,
    feature_frame_schema,
    utc_timestamps,
)
from hitl_gate.domain import DomainConfig

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = [
    "feature_source_dir",
    "historical_features",
    "open_feature_store",
    "registry_is_current",
    "write_feature_partition",
    "write_feature_store_yaml",
]

_ROW = "__hitl_entity_row"


def registry_is_current(store: FeatureStore, objects: list) -> bool:
    """True if the registry already holds objects equal to `objects` (so apply can be skipped).

    Skipping an unchanged apply keeps daily runs from rewriting the registry, which several
    processes may be reading. A missing object or project means "not current".
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.errors import FeastObjectNotFoundException, ProjectNotFoundException

    getters = [
        (Entity, store.get_entity),
        (DataSource, store.get_data_source),
        (FeatureView, store.get_feature_view),
        (FeatureService, store.get_feature_service),
    ]
    for obj in objects:
        getter = next(get for kind, get in getters if isinstance(obj, kind))
        try:
            if getter(obj.name) != obj:
                return False
        except (FeastObjectNotFoundException, ProjectNotFoundException):
            return False
    return True


def open_feature_store(domain: DomainConfig, feast_dir: Path) -> FeatureStore:
    """Open (creating if needed) the domain's store under `feast_dir` and apply its objects.

    The source is a glob over the partition directory, so new partition files never require
    a new apply; apply happens only when the declaration changed.
    """
    from feast import FeatureStore, RepoConfig

    from features.definitions import feature_objects

    root = feast_dir.resolve()
    source_dir = feature_source_dir(domain, root)
    source_dir.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(repo_path=root, **feature_store_config(domain, root))
    store = FeatureStore(repo_path=str(root), config=config)
    objects = feature_objects(domain, source_dir)
    if not registry_is_current(store, objects):
        store.apply(objects)
    return store


def partition_path(domain: DomainConfig, feast_dir: Path, day: date) -> Path:
    """The file holding one partition day: `<YYYY-MM-DD>.parquet`."""
    return feature_source_dir(domain, feast_dir) / f"{day.isoformat()}.parquet"


def write_feature_partition(
    features: pl.DataFrame, domain: DomainConfig, feast_dir: Path, day: date
) -> Path:
    """Replace one day's feature file atomically: write a temporary file, then rename it.

    Readers see the old file or the new one, never half of one, and a rerun of the day
    replaces its rows instead of duplicating them. The temporary name does not match the
    source glob, so an interrupted write is never read.
    """
    schema = feature_frame_schema(domain)
    missing = [name for name in schema if name not in features.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")
    frame = features.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    target = partition_path(domain, feast_dir, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _with_null_features(entity_df: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    return entity_df.with_columns([pl.lit(None, FEATURE_DTYPE).alias(name) for name in names])


def historical_features(
    store: FeatureStore, domain: DomainConfig, entity_df: pl.DataFrame
) -> pl.DataFrame:
    """entity_df columns + feature names, one row per entity row, in order; missing -> null.

    Point in time through the feature service: for each row the newest feature row with
    event_timestamp <= the row's event_timestamp and within the view's TTL. Only the key and
    the timestamp go to Feast; the result is joined back on a row number, so duplicate
    entity rows and extra columns survive unchanged.
    """
    names = domain.features.names
    clash = sorted(set(names) & set(entity_df.columns))
    if clash:
        raise ValueError(f"entity_df already has feature columns {clash}")
    source_dir = feature_source_dir(domain, Path(store.repo_path))
    if entity_df.height == 0 or not any(source_dir.glob("*.parquet")):
        # Nothing to join (the offline store rejects an empty entity frame or glob).
        return _with_null_features(entity_df, names)
    keyed = entity_df.with_row_index(_ROW)
    ts_dtype = keyed.schema[EVENT_TIMESTAMP]
    request = keyed.select(
        _ROW,
        pl.col(domain.case_id).cast(pl.String),
        utc_timestamps(pl.col(EVENT_TIMESTAMP), ts_dtype).alias(EVENT_TIMESTAMP),
    )
    job = store.get_historical_features(
        entity_df=request.to_pandas(),
        features=store.get_feature_service(domain.features.service),
    )
    found = pl.from_arrow(job.to_arrow()).select(
        pl.col(_ROW).cast(keyed.schema[_ROW]), *[pl.col(name).cast(FEATURE_DTYPE) for name in names]
    )
    if found.height != request.height or found[_ROW].n_unique() != request.height:
        raise RuntimeError(
            f"offline store returned {found.height} rows for {request.height} entity rows"
        )
    return keyed.join(found, on=_ROW, how="left").sort(_ROW).drop(_ROW)

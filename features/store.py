"""Open a domain's Feast store, write feature partitions and retrieve features point in time.

Feast is imported inside the functions that need it (about 13 s), so writing partitions and
importing this module stay cheap for the CLI and Dagster code locations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, cast

import polars as pl

from features.config import feature_source_dir, feature_store_config, write_feature_store_yaml
from features.engineering import (
    EVENT_TIMESTAMP,
    FEATURE_DTYPE,
    feature_frame_schema,
    utc_timestamps,
)
from features.history import SOURCE_CASE, history_source_dir
from features.partition_files import conform, write_partition
from hitl_gate.core.day_files import PARTITION_COLUMN, split_by_day, temporary_name
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.file_lock import exclusive_lock
from hitl_gate.core.staged_parquet import StagedParquet

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

__all__ = [
    "FeaturePartitionWriter",
    "feature_source_dir",
    "historical_features",
    "open_feature_store",
    "registry_is_current",
    "registry_turn",
    "write_feature_partition",
    "write_feature_store_yaml",
]

_ROW = "__hitl_entity_row"
REGISTRY_LOCK_FILE = ".registry.lock"


@contextmanager
def registry_turn(feast_dir: Path) -> Iterator[None]:
    """Hold the registry's lock file for the block: one process at a time creates or applies.

    Feast's SQL registry creates its tables on first open (`metadata.create_all`, which two
    processes racing on one SQLite file can both attempt) and `apply` writes several rows in
    turn; the domains of a home share the registry, and two domains' runs (two schedules, or
    `hitl demo` running domains side by side) open it at the same moment on a fresh home.
    """
    with exclusive_lock(feast_dir.resolve() / REGISTRY_LOCK_FILE):
        yield


def registry_is_current(store: FeatureStore, objects: list) -> bool:
    """True if the registry already holds objects equal to `objects` (so apply can be skipped).

    Skipping an unchanged apply keeps daily runs from rewriting the registry, which several
    processes may be reading. A missing object or project means "not current".
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.errors import FeastObjectNotFoundException, ProjectNotFoundException

    getters: list[tuple[type, Callable[[str], object]]] = [
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
    a new apply; apply happens only when the declaration changed. The domain is registered
    in the store's repository (`write_feature_store_yaml`), so `feast -c <feast_dir> plan`
    works at once and shows every domain sharing the registry.
    """
    from feast import FeatureStore, RepoConfig

    from features.definitions import feature_objects  # imports Feast

    root = feast_dir.resolve()
    source_dir = feature_source_dir(domain, root)
    for folder in source_dirs(domain, root):
        folder.mkdir(parents=True, exist_ok=True)
    write_feature_store_yaml(domain, root)
    config = RepoConfig(repo_path=root, **feature_store_config(domain, root))
    objects = feature_objects(domain, source_dir)
    with registry_turn(root):
        store = FeatureStore(repo_path=str(root), config=config)
        if not registry_is_current(store, objects):
            store.apply(objects)
    return store


def partition_path(domain: DomainConfig, feast_dir: Path, day: date) -> Path:
    """The file holding one partition day: `<YYYY-MM-DD>.parquet`."""
    return feature_source_dir(domain, feast_dir) / f"{day.isoformat()}.parquet"


def write_feature_partition(
    features: pl.DataFrame, domain: DomainConfig, feast_dir: Path, day: date
) -> Path:
    """Replace one day's application feature file atomically (`write_partition`)."""
    target = partition_path(domain, feast_dir, day)
    return write_partition(features, feature_frame_schema(domain), target)


class FeaturePartitionWriter:
    """The days' application feature files, written from the slices of a step.

    The Feast source is one file per day (its glob), so a day processed in slices appends
    each slice's rows to that day's file under a temporary name (`staged`), and `commit`
    renames it: the file appears whole or not at all. A day read as one slice keeps its rows
    and writes each day's file at `commit` (`write_feature_partition`), as it always did.
    """

    def __init__(self, domain: DomainConfig, feast_dir: Path, days: list[date], staged: bool):
        self.domain, self.feast_dir = domain, feast_dir
        self.schema = feature_frame_schema(domain)
        self.keys = [day.isoformat() for day in days]
        self.pending: dict[str, pl.DataFrame] = {}
        self.staged = {}
        for key, day in zip(self.keys, days, strict=True) if staged else ():
            target = partition_path(domain, feast_dir, day)
            tmp = temporary_name(target)
            # zstd, as Polars writes a whole-day file.
            self.staged[key] = StagedParquet(target, tmp, compression="zstd")

    def write(self, features: pl.DataFrame, days: pl.Series) -> None:
        """Add `features` (rows of `compute_features`), each row to the file of its `days`."""
        frame = features.with_columns(days.alias(PARTITION_COLUMN))
        for key, part in split_by_day(frame, self.keys):
            if not self.staged:
                self.pending[key] = part
            elif part.height or not self.staged[key].started:
                self.staged[key].write(conform(part, self.schema))

    def commit(self) -> None:
        for key, part in self.pending.items():
            write_feature_partition(part, self.domain, self.feast_dir, date.fromisoformat(key))
        self.pending.clear()
        for staged in self.staged.values():
            staged.commit()

    def abort(self) -> None:
        self.pending.clear()
        for staged in self.staged.values():
            staged.abort()


def source_dirs(domain: DomainConfig, feast_dir: Path) -> list[Path]:
    """The partition folders of every view the domain serves (application, then history)."""
    dirs = [feature_source_dir(domain, feast_dir)]
    if domain.features.applicant_history is not None:
        dirs.append(history_source_dir(domain, feast_dir))
    return dirs


def stored_entities(domain: DomainConfig, feast_dir: Path) -> pl.DataFrame:
    """Every stored case as an entity row (case id, event time, applicant key if declared).

    What training retrieves its features for: the application partitions, with the applicant
    key taken from the history ledger (the application view itself has no applicant column).
    """
    files = sorted(feature_source_dir(domain, feast_dir).glob("*.parquet"))
    columns = [domain.case_id, EVENT_TIMESTAMP]
    if not files:
        return pl.DataFrame(schema={c: feature_frame_schema(domain)[c] for c in columns})
    entities = pl.read_parquet(files, columns=columns)
    history = domain.features.applicant_history
    if history is None:
        return entities
    ledger = sorted(history_source_dir(domain, feast_dir).glob("*.parquet"))
    keys = pl.read_parquet(ledger, columns=[SOURCE_CASE, history.key]) if ledger else None
    if keys is None:
        return entities.with_columns(pl.lit(None, pl.String).alias(history.key))
    keys = keys.unique(SOURCE_CASE, keep="last").rename({SOURCE_CASE: domain.case_id})
    return entities.join(keys, on=domain.case_id, how="left")


def _with_null_features(entity_df: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    return entity_df.with_columns([pl.lit(None, FEATURE_DTYPE).alias(name) for name in names])


def historical_features(
    store: FeatureStore,
    domain: DomainConfig,
    entity_df: pl.DataFrame,
    service: str | None = None,
) -> pl.DataFrame:
    """entity_df columns + feature names, one row per entity row, in order; missing -> null.

    Point in time through `service` (default: the domain's declared service; scoring passes
    the champion version's, `features.services`): for each row the newest feature row with
    event_timestamp <= the row's event_timestamp and within the view's TTL. Only the key and
    the timestamp go to Feast; the result is put back in order by a row number, so duplicate
    entity rows and extra columns survive unchanged.
    """
    names = domain.features.names
    service = service or domain.features.service
    clash = sorted(set(names) & set(entity_df.columns))
    if clash:
        raise ValueError(f"entity_df already has feature columns {clash}")
    history = domain.features.applicant_history
    keys = [domain.case_id, *([history.key] if history else [])]
    absent = [k for k in keys if k not in entity_df.columns]
    if absent:
        raise ValueError(f"entity_df lacks the join keys {absent}")
    if entity_df.height == 0 or not all(
        any(folder.glob("*.parquet")) for folder in source_dirs(domain, Path(store.repo_path))
    ):
        # Nothing to join (the offline store rejects an empty entity frame or glob).
        return _with_null_features(entity_df, names)
    keyed = entity_df.with_row_index(_ROW)
    ts_dtype = keyed.schema[EVENT_TIMESTAMP]
    request = keyed.select(
        _ROW,
        *[pl.col(k).cast(pl.String) for k in keys],
        utc_timestamps(pl.col(EVENT_TIMESTAMP), ts_dtype).alias(EVENT_TIMESTAMP),
    )
    job = store.get_historical_features(
        entity_df=feast_entity_frame(request), features=store.get_feature_service(service)
    )
    found = cast(pl.DataFrame, pl.from_arrow(job.to_arrow())).select(
        pl.col(_ROW).cast(keyed.schema[_ROW]), *[pl.col(name).cast(FEATURE_DTYPE) for name in names]
    )
    # Feast returns rows in no promised order; sorting on the row number (one integer sort)
    # and checking it is exactly 0..n-1 replaces a join back and proves one row per request.
    found = found.sort(_ROW)
    if found.height != request.height or not found[_ROW].equals(keyed[_ROW], check_names=False):
        raise RuntimeError(
            f"offline store returned {found.height} rows for {request.height} entity rows"
        )
    return pl.concat([entity_df, found.drop(_ROW)], how="horizontal")


def feast_entity_frame(request: pl.DataFrame) -> pd.DataFrame:
    """The entity frame Feast wants (pandas), built without converting strings to objects.

    String columns become Arrow-backed pandas columns (zero copy) and timestamps stay numpy
    datetime64[us, UTC]: Feast's DuckDB store hands the frame to ibis, which passes Arrow
    columns to DuckDB as they are. The default `to_pandas()` makes a Python object per string
    (0.6 s per million rows) and DuckDB then scans objects; profiled in bench/features_models.
    """
    import pandas as pd

    columns = {}
    for name, dtype in request.schema.items():
        series = request[name]
        if dtype == pl.String:
            arrow = series.to_arrow()
            columns[name] = pd.array(arrow, dtype=pd.ArrowDtype(arrow.type))
        else:
            columns[name] = series.to_pandas()
    return pd.DataFrame(columns, copy=False)

"""Feast's DuckDB offline store with a point-in-time join of one DuckDB `ASOF JOIN` per view.

Why: Feast's ibis join (an inner join on key and `event <= request time`, a window over a
text row id built per request row, then a join back) cost 1.4-2.0x a hand-written ASOF JOIN
at a million rows (BENCHMARKS.md). An ASOF JOIN answers "newest row at or before t" in one
sorted merge, which is exactly Feast's rule, so the plan changes and the semantics do not:

- never a future row: the ASOF inequality takes rows with `event <= request time` only;
- TTL: Feast keeps a row while `event + ttl >= request time` (inclusive). The ASOF match is
  the newest eligible row, so if it has expired every older row has too: the features of an
  expired match are nulled rather than searching further back;
- ties on event time: Feast keeps the latest `created_timestamp`. The ASOF key is the pair
  (event, created) compared as a struct, the request side being (request time, +infinity),
  so the greatest pair at or before the request wins; a null created counts as oldest;
- every request row is kept (LEFT join), with nulls when nothing matches.

Only the historical-retrieval query changes. Materialisation (`pull_latest_from_table_or_
query`), `pull_all_from_table_or_query`, writes, logging and monitoring are inherited from
`DuckDBOfflineStore` unchanged. Requests this plan does not cover go to Feast's own
implementation: a SQL entity query, `filter_by_created_timestamp`, sources other than local
Parquet `FileSource`s, field mappings and substrait on-demand views.

The join runs on an in-memory DuckDB session that may read only the folders of the views'
sources (`source_directories`): the source paths come from Feast's registry, a file in the
home, so the session must not be a way to read the home's secrets (`read_blob`).

Selected by `offline_store: {type: features.asof_store.AsofDuckDBOfflineStore}` in the
generated configuration (`features.config`). Feast resolves that class (and the
`...Config` class next to it) by name, so this module imports Feast at module level; only
Feast imports it, after Feast itself is loaded. Warehouse stores (Snowflake, BigQuery,
Spark) are chosen by configuration and keep Feast's own implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast.data_format import ParquetFormat
from feast.feature_view import FeatureView
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from pydantic import StrictStr

from hitl_gate.core.database import restrict_to_directories
from hitl_gate.core.quiet_duckdb import quiet_connect

STORE_TYPE = "features.asof_store.AsofDuckDBOfflineStore"
_ENTITIES = "__hitl_entities"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Same options as the DuckDB store; Feast finds it by the store's name + `Config`."""

    type: StrictStr = STORE_TYPE


def _ident(name: str) -> str:
    """A quoted SQL identifier (names come from the registry, never from request data)."""
    return '"' + name.replace('"', '""') + '"'


def _is_local_parquet(view: FeatureView) -> bool:
    """Whether the view reads local Parquet files as they are (what the ASOF plan covers)."""
    source = view.batch_source
    if not isinstance(source, FileSource) or source.field_mapping:
        return False
    if "://" in source.path:
        return False
    fmt = source.file_format
    return isinstance(fmt, ParquetFormat) or (fmt is None and source.path.endswith(".parquet"))


def source_directories(paths: list[str]) -> list[str]:
    """The folders a retrieval may read: each source path's folder (before any glob), both as
    written and absolute (DuckDB compares the path as the SQL names it)."""
    folders: set[str] = set()
    for path in paths:
        fixed = path
        for wildcard in "*?[":
            fixed = fixed.split(wildcard, 1)[0]
        folder = fixed if fixed.endswith("/") else str(Path(fixed).parent) + "/"
        folders |= {folder, str(Path(folder).resolve()).rstrip("/") + "/"}
    return sorted(folders)


def _event_times(entity_df: pd.DataFrame, ts_col: str) -> pd.Series:
    """The request times, text parsed as UTC timestamps, as Feast's own DuckDB path reads them.

    Feast's helpers for this rule (`_to_utc`, `_get_entity_df_event_timestamp_range` in
    `feast.infra.offline_stores.ibis`) are private, so the rule is stated here instead.
    """
    times = entity_df[ts_col].infer_objects()
    if pd.api.types.is_string_dtype(times) or pd.api.types.is_object_dtype(times):
        times = pd.to_datetime(times, utc=True)
    return times


def _entity_table(entity_df: pd.DataFrame, ts_col: str) -> pa.Table:
    """The request rows as Arrow, request time in microseconds as Feast's ibis path returns it.

    Arrow-backed pandas columns convert without a copy; a nanosecond request time is cut to
    microseconds (DuckDB's timestamp precision, and what Feast's join hands back).
    """
    table = pa.Table.from_pandas(entity_df, preserve_index=False)
    index = table.schema.get_field_index(ts_col)
    ts_type = table.schema.field(index).type
    if pa.types.is_timestamp(ts_type) and ts_type.unit == "ns":
        micro = table.column(index).cast(pa.timestamp("us", ts_type.tz), safe=False)
        table = table.set_column(index, ts_col, micro)
    return table


def key_bounds(entities: pa.Table, column: str) -> tuple[Any, Any]:
    """The smallest and largest request key of `column` (None, None when every key is null).

    A feature row whose key lies outside them cannot match. Stated as constants in the
    view's scan, DuckDB compares them with each Parquet row group's min/max statistics and
    skips the row groups outside: a slice of a day reads the part of the day's file written
    for it (the file is written slice by slice, in case order) instead of the whole file,
    which made every slice's retrieval grow with the day (BENCHMARKS.md, issue 23).
    """
    bounds = pc.min_max(entities.column(column))
    return bounds["min"].as_py(), bounds["max"].as_py()


class _ViewJoin:
    """One feature view's ASOF JOIN clause and output columns, with its bound parameters."""

    def __init__(
        self,
        view: FeatureView,
        refs: list[str],
        full_names: bool,
        ts_col: str,
        alias: str,
        entities: pa.Table,
    ) -> None:
        source = cast(FileSource, view.batch_source)  # `_is_local_parquet` views only
        prefix = view.projection.name_to_use()
        base = view.projection.name_alias or view.name
        features = [r.split(":")[1] for r in refs if r.startswith(f"{prefix}:")]
        outputs = [f"{base}__{f}" if full_names else f for f in features]
        key_map = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
        event = f"CAST({_ident(source.timestamp_field)} AS TIMESTAMPTZ)"
        request = f"CAST(e.{_ident(ts_col)} AS TIMESTAMPTZ)"
        created = source.created_timestamp_column
        if created:
            order = (
                f"{{'t': {event}, 'c': COALESCE(CAST({_ident(created)} AS TIMESTAMPTZ), "
                "'-infinity'::TIMESTAMPTZ)}"
            )
            probe = f"{{'t': {request}, 'c': 'infinity'::TIMESTAMPTZ}}"
        else:
            order, probe = event, request
        keys = [f"{_ident(col)} AS {_ident(f'__k{i}')}" for i, col in enumerate(key_map)]
        picked = [f"{_ident(f)} AS {_ident(o)}" for f, o in zip(features, outputs, strict=True)]
        # Only feature rows whose keys are requested can match: a semi-join keeps the joined
        # side as small as the request (a slice of the day), not every stored partition, and
        # the keys' range lets the scan skip whole row groups (`key_bounds`).
        wanted = " AND ".join(
            f"{_ident(col)} BETWEEN ? AND ? AND "
            f"{_ident(col)} IN (SELECT {_ident(entity_col)} FROM {_ENTITIES})"
            for col, entity_col in key_map.items()
        )
        self.params: list[Any] = [source.path]
        for entity_col in key_map.values():
            self.params += key_bounds(entities, entity_col)
        self.clause = (
            f"ASOF LEFT JOIN (SELECT {', '.join(keys)}, {event} AS __event, {order} AS __order"
            f"{''.join(', ' + p for p in picked)} FROM read_parquet(?) WHERE {wanted}) {alias} ON "
            + " AND ".join(
                f"e.{_ident(entity_col)} = {alias}.{_ident(f'__k{i}')}"
                for i, entity_col in enumerate(key_map.values())
            )
            + f" AND {probe} >= {alias}.__order"
        )
        ttl: timedelta | None = view.ttl or None
        if ttl is None:
            self.columns = [f"{alias}.{_ident(o)}" for o in outputs]
            self.column_params: list[Any] = []
        else:
            alive = f"{alias}.__event + ?::INTERVAL >= {request}"
            self.columns = [
                f"CASE WHEN {alive} THEN {alias}.{_ident(o)} END AS {_ident(o)}" for o in outputs
            ]
            self.column_params = [ttl] * len(outputs)


class AsofRetrievalJob(RetrievalJob):
    """Runs the ASOF query on a fresh in-memory DuckDB connection when results are asked for."""

    def __init__(
        self,
        entities: pa.Table,
        sql: str,
        params: list[Any],
        odfvs: list[OnDemandFeatureView],
        full_feature_names: bool,
        metadata: RetrievalMetadata,
        feast_job: Callable[[], RetrievalJob],
        readable: list[str],
    ) -> None:
        super().__init__()
        self._entities, self._sql, self._params = entities, sql, params
        self._readable = readable
        self._odfvs, self._full_names = odfvs, full_feature_names
        self._metadata, self._feast_job = metadata, feast_job

    def session(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory session that may read only the views' source folders, with the
        request rows registered: where `fetch` runs (the caller closes it)."""
        con = quiet_connect()
        try:
            restrict_to_directories(con, self._readable)
            # Naive timestamps mean UTC, as in Feast's ibis session.
            con.execute("SET TimeZone = 'UTC'")
            con.register(_ENTITIES, self._entities)
        except BaseException:
            con.close()
            raise
        return con

    def fetch(self, con: duckdb.DuckDBPyConnection) -> pa.Table:
        """The joined rows, computed on `con` (a `session`)."""
        return con.sql(self._sql, params=self._params).to_arrow_table()

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        con = self.session()
        try:
            return self.fetch(con)
        finally:
            con.close()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def to_sql(self) -> str:
        return self._sql

    @property
    def full_feature_names(self) -> bool:
        return self._full_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Save the result through Feast's own job for the same request (same semantics).

        Feast's writer for saved datasets (Parquet, Delta, Iceberg, Lance) is private to its
        DuckDB module; its own retrieval job persists with it, so a saved dataset pays Feast's
        join once instead of this module copying the writer. Daily retrieval never persists.
        """
        self._feast_job().persist(storage, allow_overwrite=allow_overwrite, timeout=timeout)


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """`DuckDBOfflineStore` whose point-in-time join is one ASOF JOIN per feature view."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        def feast_job() -> RetrievalJob:
            return DuckDBOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )

        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        covered = (
            not filter_by_created_timestamp
            and all(_is_local_parquet(v) for v in feature_views)
            and not any(o.mode == "substrait" for o in odfvs)
        )
        if not covered or not isinstance(entity_df, pd.DataFrame):
            return feast_job()
        ts_col = infer_event_timestamp_from_entity_df(
            dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        )
        times = _event_times(entity_df, ts_col)
        low, high = times.min().to_pydatetime(), times.max().to_pydatetime()
        # A shallow copy: the caller's frame keeps its own timestamp column.
        request = entity_df.copy(deep=False)
        request[ts_col] = times
        entities = _entity_table(request, ts_col)
        joins = [
            _ViewJoin(view, feature_refs, full_feature_names, ts_col, f"f{i}", entities)
            for i, view in enumerate(feature_views)
        ]
        columns = ", ".join(["e.*", *[c for j in joins for c in j.columns]])
        sql = f"SELECT {columns} FROM {_ENTITIES} e " + " ".join(j.clause for j in joins)
        params = [p for j in joins for p in j.column_params] + [p for j in joins for p in j.params]
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != ts_col],
            min_event_timestamp=low,
            max_event_timestamp=high,
        )
        return AsofRetrievalJob(
            entities,
            sql,
            params,
            [o for o in odfvs if o.mode != "substrait"],
            full_feature_names,
            metadata,
            feast_job,
            source_directories([cast(FileSource, v.batch_source).path for v in feature_views]),
        )

"""Dagster's SQLite event log, with each database kept open instead of reopened per event.

Dagster's `SqliteEventLogStorage` creates a SQLAlchemy engine, opens the database, commits and
closes it again for every event it stores, twice for an asset event (the run's shard and the
index shard). Closing the last connection to a WAL database checkpoints the log into the
database and deletes it, so every event paid an engine, two opens and two checkpoints. A daily
run over a quarter stores about 2,000 events (a planned and a materialised event per stage and
day, which the UI needs to mark each day materialised or failed): the 900 planned events of a
ten-stage run over 90 days took 11.8 s CPU (144 s wall, load 24 on the 2 cores) that way and
4.2 s (59 s) with the databases kept open (BENCHMARKS.md, `make demo`).

`HitlSqliteEventLogStorage` stores exactly the same rows in the same files; it only keeps one
engine (a small pool of open connections) per database: the index shard and the few run
shards used last. The home's `dagster.yaml` names it (`hitl_gate.app.runner.DAGSTER_YAML`), so
the CLI, the demo, run workers and the Dagster UI all use it; a home created before keeps
Dagster's default, which reads and writes the same files.

A single event is still its own committed transaction. A batch of events (Dagster hands one to
`store_event_batch` when event batching is on: a run's planned events, a ranged step's
materialisations; `hitl_gate.app.runner` turns it on) is stored by the very same per-event code,
inside one transaction per database instead of two commits per event: each commit of a WAL
database writes and syncs the log, so a quarter's 900 planned events paid 1,800 syncs. The batch is
rolled back on an error while it is stored, and Dagster then stores its events one by one.

Per event, Dagster also asked the index database whether its tags table exists (a new engine
and connection each time) and whether `asset_keys` has its index columns (a reflection of the
table), and serialised a materialisation twice: as the event's row and, wrapped in its record,
as the asset's `last_materialization`. Each read of asset records (every asset step reads its
inputs' records for their data versions, every check its asset's: some 20 reads a day's run)
asked twice more for a column of `asset_keys` (a reflection each) and twice whether a
secondary index's migration is complete (a query each). Tables and columns are never dropped
from a database in use and a completed migration is never undone (Dagster only inserts or
updates its row), so a "yes" is kept (per storage, forgotten when its databases are wiped,
upgraded or closed; a "no" is asked again); the record's JSON is the event's JSON inside the
record's own (`_record_json`), the same text serialising the record gives (pinned by
tests/unit/pipelines/test_event_log_storage.py, which compares every row with Dagster's).

Each event's row is inserted by one constant statement given the row as its parameters
(`store_event`), where Dagster builds a statement holding the row's values for each event and
SQLAlchemy derives its cache key and compiles it again: with the event's serialisation, most of
what storing it costs in Python. The asset's `asset_keys` row is updated, and inserted only
where there is none (`_store_asset_event`): Dagster tried the insert first, which failed with a
wrapped exception for every event of an asset but its first. A check planned over a range of
days has a row per day, each holding the planned event's JSON, which Dagster serialised again
for every day; it is the JSON its row in the event log already has (`_event_json`).

Each read of asset records (a step's inputs, a check's asset: ~20 a day's run) parsed every
asset's `last_materialization` JSON again: the record of its latest materialisation, 1-2 ms for
a stage whose schema metadata lists 40-90 columns. A JSON text always parses to the same record,
so the record is kept per text (`_record_of`, at most `RECORDS_KEPT`); whether Dagster takes it
from the row (a record, newer than the asset's last wipe) is decided for each read as Dagster
decides it, and any other row is read by Dagster's own code.

Each run writes a database of its own, which Dagster initialises by loading its ~90 migration
scripts twice (to check the revision, then to stamp the new file): about 75 ms of CPU per run, a
tenth of a day's run outside its steps. A new run's database is instead written from a copy of
one that Dagster's own code initialised once in this process (`fresh_run_shard`): the same
tables, indexes, WAL mode and migration stamp. It is placed only where no file of that run
exists (no database, no leftover `-wal`/`-shm`), by an atomic link
(`hitl_gate.core.new_database`); anything else is initialised by Dagster's code, as before.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import dagster._check as check
from dagster import AssetKey, EventLogEntry, EventLogRecord
from dagster._core.assets import AssetDetails
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import (
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
    AssetCheckEvaluationPlanned,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData, deserialize_value, serialize_value
from dagster._time import datetime_from_timestamp
from sqlalchemy import Connection, Engine, bindparam, create_engine
from sqlalchemy.exc import IntegrityError

from hitl_gate.core.new_database import place_new_database
from pipelines.instance_storage import stamped

# Run shards kept open besides the index: a run writes to one; the UI's watchers read a few.
OPEN_RUN_SHARDS = 4
# Assets' latest materialisation records kept parsed (a day's run reads ~20, both domains ~30).
RECORDS_KEPT = 256
# The one insert of an event's row, its values passed as parameters (see `store_event`).
INSERT_EVENT = SqlEventLogStorageTable.insert()
# An asset's `asset_keys` row: the columns set are the parameters' (`_store_asset_event`).
INSERT_ASSET_KEY = AssetKeyTable.insert()
UPDATE_ASSET_KEY = AssetKeyTable.update().where(
    AssetKeyTable.c.asset_key == bindparam("updated_asset_key")
)


class HitlSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that keeps an engine per database instead of one per event."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        # While a batch is stored: the thread storing it and its open transaction per shard.
        self._batch_thread: int | None = None
        self._batch: dict[str, Connection] = {}
        self._batch_stack = ExitStack()
        # Index tables, `asset_keys` columns and completed secondary indexes seen to exist
        # (see the module doc).
        self._tables_found: set[str] = set()
        self._asset_key_cols_found: set[str] = set()
        self._secondary_indexes_found: set[str] = set()
        # Per thread: the event `_event_to_row` serialised last, and its JSON.
        self._serialised = threading.local()
        # Assets' `last_materialization` JSON read, and the record it holds (see the module doc).
        self._records_read: dict[str, EventLogRecord] = {}
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> HitlSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, created (and its database initialised, unless it is stamped
        already: `instance_storage.stamped`) on first use; the run shard used longest ago is
        closed once more than `OPEN_RUN_SHARDS` are open."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        if shard not in self._initialized_dbs:
            if not stamped(self._base_dir, shard) and (
                shard == INDEX_SHARD_NAME or not self._place_fresh_run_shard(shard)
            ):
                self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
        for name in runs[: max(0, len(runs) - OPEN_RUN_SHARDS)]:
            self._engines.pop(name).dispose()
        return engine

    def _place_fresh_run_shard(self, shard: str) -> bool:
        """Write `fresh_run_shard()` as the new run's database; False (nothing written) when
        any file of that run exists already, so Dagster's own code checks or initialises it."""
        return place_new_database(Path(self.path_for_shard(shard)), fresh_run_shard())

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:  # type: ignore[override]
        """One transaction on `shard`, on a kept connection (the lock serialises threads, as
        Dagster's own method does); inside `store_event_batch`, the batch's transaction."""
        if self._batch_thread == threading.get_ident():  # the batch's thread holds the lock
            conn = self._batch.get(shard)
            if conn is None:
                conn = self._batch_stack.enter_context(self._engine(shard).connect())
                self._batch_stack.enter_context(conn.begin())
                self._batch[shard] = conn
            yield conn
            return
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has `table_name`; a "yes" is remembered."""
        return _remembered(self._tables_found, table_name, super().has_table)

    def has_asset_key_col(self, column_name: str) -> bool:
        """Whether `asset_keys` has `column_name`; a "yes" is remembered."""
        if column_name in self._asset_key_cols_found:
            return True
        return super().has_asset_key_col(column_name)

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        """Dagster's reflection of `asset_keys`' columns on `conn`; a "yes" is remembered."""
        ask = functools.partial(super()._has_asset_key_col_on_connection, conn)
        return _remembered(self._asset_key_cols_found, column_name, ask)

    def has_secondary_index(self, name: str) -> bool:
        """Whether the secondary index `name`'s migration is complete; a "yes" is remembered."""
        return _remembered(self._secondary_indexes_found, name, super().has_secondary_index)

    def _get_latest_materialization_records(
        self, raw_asset_rows: Sequence[Mapping[str, Any]]
    ) -> Mapping[AssetKey, EventLogRecord | None]:
        """As Dagster's: each row's own record where it holds one (not older than the asset's
        last wipe), read once per JSON text (`_record_of`); the other rows as Dagster reads
        them (a query of the event log)."""
        known: dict[AssetKey, EventLogRecord | None] = {}
        rest = []
        for row in raw_asset_rows:
            key = AssetKey.from_db_string(row["asset_key"])
            if not key:
                continue
            record = self._record_of(row)
            if record is None:
                rest.append(row)
            else:
                known[key] = record
        if not rest:  # Dagster would query the event log for no asset: nothing
            return known
        return {**super()._get_latest_materialization_records(rest), **known}

    def _record_of(self, row: Mapping[str, Any]) -> EventLogRecord | None:
        """The row's `last_materialization` record when Dagster takes it from the row (a
        record, newer than the asset's last wipe), else None; one JSON text is parsed once."""
        text = row["last_materialization"]
        if not text:
            return None
        record = self._records_read.get(text)
        if record is None:
            parsed = deserialize_value(text, NamedTuple)  # type: ignore[type-var]
            if not isinstance(parsed, EventLogRecord):
                return None
            if len(self._records_read) >= RECORDS_KEPT:
                self._records_read.clear()
            self._records_read[text] = record = parsed
        details = AssetDetails.from_db_string(row["asset_details"])
        wiped = details.last_wipe_timestamp if details else None
        return record if wiped is None or record.event_log_entry.timestamp > wiped else None

    def _event_to_row(self, event: EventLogEntry) -> dict[str, Any]:
        """Dagster's row of `event`; its JSON is kept for the asset's `last_materialization`."""
        row = super()._event_to_row(event)
        self._serialised.last = (event, row["event"])
        return row

    def _event_json(self, event: EventLogEntry) -> str:
        """`serialize_value(event)`: the JSON `_event_to_row` made of this very event, if any."""
        last = getattr(self._serialised, "last", None)
        return last[1] if last is not None and last[0] is event else serialize_value(event)

    def store_event(self, event: EventLogEntry) -> None:
        """As `SqliteEventLogStorage.store_event` (dagster 1.13): the event's row in its run's
        database, mirrored in the index for asset, asset check and run status events; each
        insert is one constant statement given the row as parameters, where Dagster builds and
        compiles a statement with the row's values in it for every event (a third of the cost
        of storing one). An asset check event, which writes the index twice (its row, then
        the check's execution row), is stored as a batch of one: one commit per database."""
        check.inst_param(event, "event", EventLogEntry)
        if (
            event.dagster_event_type in ASSET_CHECK_EVENTS
            and self._batch_thread != threading.get_ident()
        ):
            self.store_event_batch([event])
            return
        row = self._event_to_row(event)
        with self.run_connection(event.run_id) as conn:
            conn.execute(INSERT_EVENT, row)
        kind = event.dagster_event_type
        if kind in ASSET_EVENTS:
            with self.index_transaction() as conn:
                event_id = _insert_event(conn, row)
                if event_id is None:
                    raise DagsterInvariantViolationError(
                        "Cannot store asset event tags for null event id."
                    )
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if kind in ASSET_CHECK_EVENTS:
            with self.index_connection() as conn:
                event_id = _insert_event(conn, row)
            self.store_asset_check_event(event, event_id)
        if kind in EVENT_TYPE_TO_PIPELINE_RUN_STATUS:
            with self.index_connection() as conn:
                conn.execute(INSERT_EVENT, row)

    def _store_asset_event(self, conn: Connection, event: EventLogEntry, event_id: int) -> None:
        """As Dagster's: the asset's `asset_keys` row set to the event's values, updated, or
        inserted where there is none; Dagster tries the insert first, which fails (an exception
        raised and wrapped) for every event but an asset's first, and builds both statements
        per event."""
        dagster_event = event.dagster_event
        if dagster_event is None or dagster_event.asset_key is None:
            return
        values = self._get_asset_entry_values(
            event, event_id, self._has_asset_key_index_cols_on_connection(conn)
        )
        if not values:
            return
        key = dagster_event.asset_key.to_string()
        if conn.execute(UPDATE_ASSET_KEY, {"updated_asset_key": key, **values}).rowcount:
            return
        try:
            conn.execute(INSERT_ASSET_KEY, {"asset_key": key, **values})
        except IntegrityError:  # another process inserted it since: update it as Dagster would
            conn.execute(UPDATE_ASSET_KEY, {"updated_asset_key": key, **values})

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """As Dagster's: a planned row per partition of the check's run, each holding the
        event's JSON, serialised once here (Dagster serialises it again for every row: 90 times
        for a check over a quarter)."""
        dagster_event = event.dagster_event
        assert dagster_event is not None
        planned = dagster_event.event_specific_data
        assert isinstance(planned, AssetCheckEvaluationPlanned)
        subset = planned.partitions_subset
        partition_keys = subset.get_partition_keys() if subset else [None]
        shared = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": self._event_json(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    [{**shared, "partition": key} for key in partition_keys]
                )
            )

    def _get_asset_entry_values(
        self, event: EventLogEntry, event_id: int, has_asset_key_index_cols: bool
    ) -> dict[str, Any]:
        """Dagster's values, a materialisation's record built from its JSON already made."""
        last = getattr(self._serialised, "last", None)
        self._serialised.last = None
        dagster_event = event.dagster_event
        if last is None or last[0] is not event or dagster_event is None:
            return super()._get_asset_entry_values(event, event_id, has_asset_key_index_cols)
        if not dagster_event.is_step_materialization:
            return super()._get_asset_entry_values(event, event_id, has_asset_key_index_cols)
        # As SqlEventLogStorage._get_asset_entry_values (dagster 1.13) for a materialisation.
        values: dict[str, Any] = {
            "last_materialization": _record_json(event_id, last[1]),
            "last_run_id": event.run_id,
        }
        if has_asset_key_index_cols:
            values["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        return values

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store `events` as `store_event` stores each, in one transaction per database."""
        with self._db_lock:
            self._batch_thread = threading.get_ident()
            self._batch_stack = ExitStack()
            try:
                # Leaving the stack commits each shard's transaction, or rolls all of them
                # back on an error (Dagster then stores the events one by one).
                with self._batch_stack:
                    for event in events:
                        self.store_event(event)
            finally:
                self._batch_thread = None
                self._batch = {}

    def close_databases(self) -> None:
        """Close every kept connection (the last close checkpoints each WAL into its file) and
        forget the tables and columns seen (a wipe or an upgrade follows)."""
        self._tables_found = set()
        self._asset_key_cols_found = set()
        self._secondary_indexes_found = set()
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self.close_databases()  # the run shards' files are deleted: nothing may hold them
        super().wipe()

    def upgrade(self) -> None:
        self.close_databases()
        super().upgrade()

    def dispose(self) -> None:
        self.close_databases()
        super().dispose()


def _remembered(found: set[str], name: str, ask: Callable[[str], bool]) -> bool:
    """`ask(name)`, unless `name` is in `found`; a "yes" is added to `found` (see the module
    doc: what is found in the index database stays there while it is in use)."""
    if name in found:
        return True
    if ask(name):
        found.add(name)
        return True
    return False


def _insert_event(conn: Connection, row: Mapping[str, Any]) -> int | None:
    """Insert an event's row; the id the database gave it."""
    key = conn.execute(INSERT_EVENT, dict(row)).inserted_primary_key
    return None if key is None else key[0]


_STAND_IN = EventLogEntry(
    error_info=None, level=0, user_message="hitl-stand-in", run_id="", timestamp=0.0
)
_STAND_IN_JSON = serialize_value(_STAND_IN)


def _record_json(storage_id: int, event_json: str) -> str:
    """`serialize_value(EventLogRecord(storage_id, event))` from the event's own JSON.

    Serialising a record writes its event exactly as serialising the event alone does (the
    same packing, the same `json.dumps`); so the record is serialised around a small stand-in
    event and the stand-in's JSON replaced by the event's.
    """
    record = serialize_value(EventLogRecord(storage_id=storage_id, event_log_entry=_STAND_IN))
    if record.count(_STAND_IN_JSON) != 1:
        raise ValueError("event log: the stand-in event is not once in its record's JSON")
    return record.replace(_STAND_IN_JSON, event_json)


@functools.cache
def fresh_run_shard() -> bytes:
    """A run's event database as Dagster's own `_initdb` creates it, made once per process.

    Initialised by `SqliteEventLogStorage` itself in a temporary folder, then closed (the WAL
    is checkpointed into the file, which keeps WAL mode in its header), and read back.
    """
    with tempfile.TemporaryDirectory(prefix="hitl-run-shard-") as folder:
        storage = SqliteEventLogStorage(folder)
        engine = create_engine(
            storage.conn_string_for_shard("template"),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        try:
            storage._initdb(engine)
        finally:
            engine.dispose()
            storage.dispose()
        with open(storage.path_for_shard("template"), "rb") as made:
            return made.read()

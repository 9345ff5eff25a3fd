"""Dagster's SQLite run and schedule storage, opened without reading the migration scripts again.

Opening a Dagster instance opens its run and schedule databases, and the event log's index on
first use, and each asks Alembic for the newest migration of Dagster's scripts (the "head"):
Alembic reads and runs its ~90 migration scripts to answer, 13-16 ms of CPU each time, three
times for every run, every CLI command and every instance a test or the UI opens. Dagster only
compares the answer with nothing: a database whose revision is stamped is left as it is
(`SqliteRunStorage.from_local`, `SqliteScheduleStorage.from_local`,
`SqliteEventLogStorage._initdb`: "if not (db_revision and head_revision): create and stamp");
the head is the installed package's and does not change while a process runs.

So the head is read once per process (`head_revision`), and a database that exists and has its
revision stamped (`stamped`) is opened directly, as Dagster's code would after its check; any
other (a new home, a database without a stamp, a run storage without its `instance_info` table)
goes through Dagster's own code, unchanged. The home's `dagster.yaml` names these classes
(`hitl_gate.app.runner.dagster_yaml`); the files are Dagster's, read the same by its defaults.

Dagster also reflects the `runs` table's columns for every run event it stores and every
backfill query ("has the start/end time columns?"); columns are never dropped from a database
in use, so a "yes" is kept for the storage's life (a "no" is asked again).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
    SqliteScheduleStorage,
)
from dagster._core.storage.sql import get_alembic_config
from dagster._core.storage.sqlite import create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool


@functools.cache
def head_revision() -> str | None:
    """The newest migration of Dagster's scripts, as Dagster's `check_alembic_revision` reads
    it (every SQLite storage of Dagster points at the same scripts); read once per process."""
    import dagster._core.storage.runs.sqlite.sqlite_run_storage as module

    script = ScriptDirectory.from_config(get_alembic_config(module.__file__))
    head = script.as_revision_number("head")
    return head if isinstance(head, str) else None


def stamped(base_dir: str, name: str, tables: frozenset[str] = frozenset()) -> bool:
    """Whether `<base_dir>/<name>.db` exists with its Alembic revision stamped (and `tables`):
    the databases Dagster's storages open without changing anything."""
    if not os.path.exists(os.path.join(base_dir, f"{name}.db")) or not head_revision():
        return False
    engine = create_engine(create_db_conn_string(base_dir, name), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not MigrationContext.configure(conn).get_current_revision():
                return False
            return tables <= set(inspect(conn).get_table_names()) if tables else True
    finally:
        engine.dispose()


class HitlSqliteRunStorage(SqliteRunStorage):
    """`SqliteRunStorage` opened without re-reading the migration scripts; `runs` columns
    found are remembered."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._has_run_stats_index_cols = False
        self._has_backfill_id_column = False
        super().__init__(conn_string, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> HitlSqliteRunStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(
        cls, base_dir: str, inst_data: ConfigurableClassData | None = None
    ) -> HitlSqliteRunStorage:
        """Dagster's `from_local`, after which a stamped database with `instance_info` is
        opened as it is; only the check of the scripts is left out."""
        if stamped(base_dir, "runs", frozenset({"runs", "instance_info"})):
            return cls(create_db_conn_string(base_dir, "runs"), inst_data)
        return super().from_local(base_dir, inst_data)

    def has_run_stats_index_cols(self) -> bool:
        """Whether `runs` has its start/end time columns; a "yes" is remembered."""
        if not self._has_run_stats_index_cols:
            self._has_run_stats_index_cols = super().has_run_stats_index_cols()
        return self._has_run_stats_index_cols

    def has_backfill_id_column(self) -> bool:
        """Whether `runs` has its backfill id column; a "yes" is remembered."""
        if not self._has_backfill_id_column:
            self._has_backfill_id_column = super().has_backfill_id_column()
        return self._has_backfill_id_column


class HitlSqliteScheduleStorage(SqliteScheduleStorage):
    """`SqliteScheduleStorage` opened without re-reading the migration scripts."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> HitlSqliteScheduleStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(
        cls, base_dir: str, inst_data: ConfigurableClassData | None = None
    ) -> HitlSqliteScheduleStorage:
        """Dagster's `from_local`, after which a stamped database is opened as it is."""
        if stamped(base_dir, "schedules"):
            return cls(create_db_conn_string(base_dir, "schedules"), inst_data)
        storage = super().from_local(base_dir, inst_data)
        assert isinstance(storage, HitlSqliteScheduleStorage)
        return storage

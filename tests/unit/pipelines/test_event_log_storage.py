"""The kept-open SQLite event log stores what Dagster's own does, failures included."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    DailyPartitionsDefinition,
    EventLogEntry,
    Failure,
    asset,
    materialize,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster_shared.check import CheckError

from hitl_gate.app.runner import DAGSTER_YAML, EVENT_BATCH_ENV, ensure_dagster_home
from pipelines.event_log_storage import OPEN_RUN_SHARDS, HitlSqliteEventLogStorage

DAYS = DailyPartitionsDefinition(start_date="2018-01-01", end_date="2018-01-11")
RANGE = {
    "dagster/asset_partition_range_start": "2018-01-02",
    "dagster/asset_partition_range_end": "2018-01-04",
}


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def first() -> None:
    return None


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run(), deps=[first])
def second(context) -> None:  # noqa: ANN001 (Dagster's context)
    if context.run.tags.get("fail") == "yes":
        raise Failure("refused on purpose")


def _partitions(instance: DagsterInstance, key: AssetKey) -> tuple[set[str], set[str]]:
    """(materialised, failed) partitions of `key`, as the Dagster UI computes them."""
    status = get_and_update_asset_status_cache_value(instance, key, DAYS)
    assert status is not None
    materialised = status.deserialize_materialized_partition_subsets(DAYS)
    failed = status.deserialize_failed_partition_subsets(DAYS)
    return set(materialised.get_partition_keys()), set(failed.get_partition_keys())


def test_a_new_home_uses_the_kept_open_event_log(tmp_path: Path) -> None:
    ensure_dagster_home(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, HitlSqliteEventLogStorage)


@pytest.mark.slow  # a real run: Dagster's compute log capture starts tail and Python processes
def test_ranged_runs_mark_each_day_materialised_or_failed_and_read_back_with_dagster_default(
    tmp_path: Path,
) -> None:
    kept, default = tmp_path / "kept", tmp_path / "default"
    for home in (kept, default):
        ensure_dagster_home(home)
    (default / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")  # Dagster's own
    results = {}
    for home in (kept, default):
        with DagsterInstance.from_config(str(home)) as instance:
            ok = materialize([first, second], instance=instance, tags=RANGE)
            failed = materialize(
                [first, second],
                instance=instance,
                tags={**RANGE, "dagster/asset_partition_range_end": "2018-01-06", "fail": "yes"},
                raise_on_error=False,
            )
            assert ok.success and not failed.success
            events = [
                e.dagster_event_type.value
                for e in instance.all_logs(failed.run_id)
                if e.dagster_event_type is not None
            ]
            results[home.name] = (
                _partitions(instance, first.key),
                _partitions(instance, second.key),
                sorted(events),
            )
    assert results["kept"] == results["default"]
    (first_done, first_failed), (second_done, second_failed), _ = results["kept"]
    days = {f"2018-01-0{d}" for d in range(2, 7)}
    assert first_done == days and not first_failed
    # The failed run planned 01-02..01-06 of `second` and wrote none: each of its days is
    # failed (its latest attempt), the days of the earlier run stay materialised too.
    assert second_done == {"2018-01-02", "2018-01-03", "2018-01-04"}
    assert second_failed == days
    # The kept home's files read the same with Dagster's default storage.
    (kept / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    with DagsterInstance.from_config(str(kept)) as instance:
        assert not isinstance(instance.event_log_storage, HitlSqliteEventLogStorage)
        assert _partitions(instance, second.key) == (second_done, days)


@pytest.mark.slow  # a real run: Dagster's compute log capture starts tail and Python processes
def test_only_a_few_run_databases_stay_open_and_dispose_closes_them(tmp_path: Path) -> None:
    ensure_dagster_home(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, HitlSqliteEventLogStorage)
        for _ in range(OPEN_RUN_SHARDS + 2):
            assert materialize([first], instance=instance, partition_key="2018-01-02").success
        assert len(storage._engines) <= OPEN_RUN_SHARDS + 1  # the run shards and the index
        assert len(instance.get_run_records()) == OPEN_RUN_SHARDS + 2
        assert all(len(instance.all_logs(r.dagster_run.run_id)) for r in instance.get_run_records())
    assert not storage._engines


@pytest.mark.slow  # a real run: Dagster's compute log capture starts tail and Python processes
def test_wipe_closes_the_databases_before_deleting_their_files(tmp_path: Path) -> None:
    ensure_dagster_home(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        run = materialize([first], instance=instance, partition_key="2018-01-02")
        instance.event_log_storage.wipe()
        assert not instance.all_logs(run.run_id)
        assert materialize([first], instance=instance, partition_key="2018-01-03").success
        assert instance.get_materialized_partitions(first.key) == {"2018-01-03"}


def _rows(storage: HitlSqliteEventLogStorage, run_id: str) -> tuple[list, list, list]:
    """What a run left in the storage: its events, and the index's events and asset keys."""
    from sqlalchemy import text

    with storage.run_connection(run_id) as conn:
        events = conn.execute(text("SELECT event FROM event_logs ORDER BY id")).fetchall()
    with storage.index_connection() as conn:
        index = conn.execute(text("SELECT event FROM event_logs ORDER BY id")).fetchall()
        keys = conn.execute(
            text(
                "SELECT asset_key, last_materialization, last_run_id FROM asset_keys "
                "ORDER BY asset_key"
            )  # fmt: skip
        ).fetchall()
    return events, index, keys


@pytest.mark.slow  # a real run: Dagster's compute log capture starts tail and Python processes
def test_a_batch_stores_the_rows_its_events_store_one_by_one_or_none(tmp_path: Path) -> None:
    """A run's events stored as one batch leave exactly the rows of storing them one by one;
    a batch failing part way leaves none of its rows."""
    source = tmp_path / "source"
    ensure_dagster_home(source)
    with DagsterInstance.from_config(str(source)) as instance:
        run = materialize([first, second], instance=instance, tags=RANGE)
        entries = list(instance.all_logs(run.run_id))
    assert len(entries) > 10
    single, batched = (HitlSqliteEventLogStorage(str(tmp_path / n)) for n in ("one", "batch"))
    for entry in entries:
        single.store_event(entry)
    batched.store_event_batch(entries)
    assert _rows(batched, run.run_id) == _rows(single, run.run_id)
    assert len(_rows(batched, run.run_id)[0]) == len(entries)

    failing = HitlSqliteEventLogStorage(str(tmp_path / "failing"))
    with pytest.raises(CheckError):
        failing.store_event_batch([*entries, None])  # type: ignore[list-item]
    assert _rows(failing, run.run_id) == ([], [], [])
    failing.store_event_batch(entries)  # the storage is usable again, and not in a batch
    failing.store_event(entries[0])
    assert len(_rows(failing, run.run_id)[0]) == len(entries) + 1
    for storage in (single, batched, failing):
        storage.dispose()


@pytest.mark.slow  # a real run: Dagster's compute log capture starts tail and Python processes
def test_ranged_runs_with_event_batches_mark_the_same_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Dagster's event batching on (as `hitl` runs turn it on), materialised and failed
    days are those of Dagster's default storage without batching."""
    results = {}
    for name, batch in (("batched", "1000"), ("default", None)):
        home = tmp_path / name
        ensure_dagster_home(home)
        if batch is None:
            (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
            monkeypatch.delenv(EVENT_BATCH_ENV, raising=False)
        else:
            monkeypatch.setenv(EVENT_BATCH_ENV, batch)
        with DagsterInstance.from_config(str(home)) as instance:
            assert materialize([first, second], instance=instance, tags=RANGE).success
            failed = materialize(
                [first, second],
                instance=instance,
                tags={**RANGE, "dagster/asset_partition_range_end": "2018-01-06", "fail": "yes"},
                raise_on_error=False,
            )
            assert not failed.success
            results[name] = (_partitions(instance, first.key), _partitions(instance, second.key))
    assert results["batched"] == results["default"]


def _database_shape(path: str) -> tuple:
    """Schema, migration stamp and journal mode of a SQLite file (what a shard is made of)."""
    import sqlite3

    with sqlite3.connect(path) as con:
        schema = con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        stamp = con.execute("SELECT version_num FROM alembic_version").fetchall()
        mode = con.execute("PRAGMA journal_mode").fetchone()
    return schema, stamp, mode


def test_a_new_run_database_is_the_one_dagster_makes(tmp_path: Path) -> None:
    dagsters, ours = (
        SqliteEventLogStorage(str(tmp_path / "d")),
        HitlSqliteEventLogStorage(str(tmp_path / "o")),
    )
    with dagsters._connect("run-1"):
        pass
    ours._engine("run-1")
    assert Path(ours.path_for_shard("run-1")).stat().st_size > 0
    assert _database_shape(ours.path_for_shard("run-1")) == _database_shape(
        dagsters.path_for_shard("run-1")
    )
    assert not list((tmp_path / "o").glob("*.new"))  # the staged copy is gone
    ours.dispose()
    dagsters.dispose()


@pytest.mark.parametrize("leftover", ["", "-wal", "-shm"])
def test_a_run_database_already_there_is_never_replaced(tmp_path: Path, leftover: str) -> None:
    """Adversarial: a run's file (or a crashed run's log beside no database) stays untouched and
    goes to Dagster's own initialisation, which refuses what is not a database."""
    storage = HitlSqliteEventLogStorage(str(tmp_path))
    path = Path(storage.path_for_shard("run-2") + leftover)
    path.write_bytes(b"not a database")
    assert storage._place_fresh_run_shard("run-2") is False
    assert path.read_bytes() == b"not a database"
    if leftover == "":
        assert not Path(storage.path_for_shard("run-2") + "-wal").exists()
    storage.dispose()


def test_two_storages_racing_for_one_run_database_place_it_once(tmp_path: Path) -> None:
    first, second = (
        HitlSqliteEventLogStorage(str(tmp_path)),
        HitlSqliteEventLogStorage(str(tmp_path)),
    )
    assert first._place_fresh_run_shard("run-3") is True
    size = Path(first.path_for_shard("run-3")).stat().st_size
    assert second._place_fresh_run_shard("run-3") is False
    assert Path(first.path_for_shard("run-3")).stat().st_size == size
    first.dispose()
    second.dispose()


def _asset_events(run_id: str, when: float) -> list[EventLogEntry]:
    """A materialisation with metadata and an indexed tag, its planned event, an observation,
    a check planned over two days and evaluated on one, a run status and a step event: each
    kind of row `store_event` writes to the index."""
    from dagster import AssetCheckEvaluation, AssetMaterialization, AssetObservation, MetadataValue
    from dagster._core.events import (
        AssetCheckEvaluationPlanned,
        AssetMaterializationPlannedData,
        AssetObservationData,
        DagsterEvent,
        DagsterEventType,
        StepMaterializationData,
    )

    key = AssetKey(["credit", "scored"])
    materialised = AssetMaterialization(
        asset_key=key,
        partition="2018-01-02",
        metadata={"rows": 12, "preview": MetadataValue.md("| a |\n|---|\n| é & <b> |"),
                  "share": 0.25, "doc": MetadataValue.json({"z": [1, None, {"q": "x"}]})},
        tags={"dagster/data_version": "abc", "note": "not-indexed"},
    )  # fmt: skip
    kinds = [
        (DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
         AssetMaterializationPlannedData(key, partition="2018-01-02")),
        (DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialised)),
        (DagsterEventType.ASSET_OBSERVATION,
         AssetObservationData(AssetObservation(asset_key=key, metadata={"seen": 1}))),
        (DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
         AssetCheckEvaluationPlanned(asset_key=key, check_name="rows",
                                     partitions_subset=DAYS.subset_with_partition_keys(
                                         ["2018-01-02", "2018-01-03"]).to_serializable_subset())),
        (DagsterEventType.ASSET_CHECK_EVALUATION,
         AssetCheckEvaluation(key, "rows", passed=True, metadata={"n": 3},
                              partition="2018-01-02")),
        (DagsterEventType.RUN_START, None),
        (DagsterEventType.STEP_START, None),
    ]  # fmt: skip
    return [
        EventLogEntry(
            error_info=None,
            level=20,
            user_message="",
            run_id=run_id,
            timestamp=when + i,
            step_key="scored",
            job_name="job",
            dagster_event=DagsterEvent(
                event_type.value, "job", step_key="scored", event_specific_data=data
            ),
        )  # fmt: skip
        for i, (event_type, data) in enumerate(kinds)
    ]


def _all_rows(storage: SqliteEventLogStorage, run_ids: list[str]) -> dict[str, list]:
    """Every row of the run databases and of the index's event, asset and tag tables (all
    columns but the time the database stamps a new row with)."""
    from sqlalchemy import text

    rows = {}
    for run_id in run_ids:
        with storage.run_connection(run_id) as conn:
            rows[run_id] = conn.execute(text("SELECT * FROM event_logs ORDER BY id")).fetchall()
    with storage.index_connection() as conn:
        for table in ("event_logs", "asset_keys", "asset_event_tags", "asset_check_executions"):
            info = conn.execute(text(f"PRAGMA table_info({table})")).fetchall()
            columns = ", ".join(c[1] for c in info if c[1] != "create_timestamp")
            query = text(f"SELECT {columns} FROM {table} ORDER BY 1")
            rows[table] = conn.execute(query).fetchall()
    return rows


def test_every_row_is_the_one_dagsters_own_storage_writes(tmp_path: Path) -> None:
    """Events stored one by one and in a batch, twice for the same asset (the second updates
    its `asset_keys` row): the same rows, column for column, as `SqliteEventLogStorage`'s,
    `last_materialization` (the record built around the event's JSON) included."""
    first_run, second_run = _asset_events("run-a", 1.5e9), _asset_events("run-b", 1.6e9)
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster"))
    ours, batched = (HitlSqliteEventLogStorage(str(tmp_path / n)) for n in ("ours", "batch"))
    for storage in (dagsters, ours):
        for entry in [*first_run, *second_run]:
            storage.store_event(entry)
    batched.store_event_batch(first_run)
    batched.store_event_batch(second_run)
    expected = _all_rows(dagsters, ["run-a", "run-b"])
    assert len(expected["asset_keys"]) == 1 and expected["asset_event_tags"]
    # Each run's check: a row per planned day, one of them evaluated.
    assert len(expected["asset_check_executions"]) == 4
    assert {r.execution_status for r in expected["asset_check_executions"]} == {
        "PLANNED",
        "SUCCEEDED",
    }
    assert "run-b" in expected["asset_keys"][0]  # the second materialisation is the last
    assert _all_rows(ours, ["run-a", "run-b"]) == expected
    assert _all_rows(batched, ["run-a", "run-b"]) == expected
    for storage in (dagsters, ours, batched):
        storage.dispose()


def test_a_table_found_is_remembered_a_missing_one_asked_again(tmp_path: Path) -> None:
    import sqlite3

    storage = HitlSqliteEventLogStorage(str(tmp_path))
    storage._engine(INDEX_SHARD_NAME)
    assert storage.has_table("asset_event_tags")
    assert not storage.has_table("made_later")
    with sqlite3.connect(storage.path_for_shard(INDEX_SHARD_NAME)) as con:
        con.execute("CREATE TABLE made_later (x)")
    assert storage.has_table("made_later")
    assert storage._tables_found == {"asset_event_tags", "made_later"}
    storage.wipe()  # forgotten with the databases (the wipe itself asks about Dagster's)
    assert "asset_event_tags" in storage._tables_found
    assert "made_later" not in storage._tables_found
    assert storage.has_table("made_later")
    storage.dispose()


def test_an_asset_keys_column_and_a_secondary_index_found_are_remembered(tmp_path: Path) -> None:
    import sqlite3

    storage = HitlSqliteEventLogStorage(str(tmp_path))
    storage._engine(INDEX_SHARD_NAME)
    assert storage.has_asset_key_col("last_materialization_timestamp")
    assert storage.can_read_asset_status_cache()  # `cached_status_data`, read per asset read
    assert not storage.has_asset_key_col("added_later")
    assert not storage.has_secondary_index("made_later")
    with sqlite3.connect(storage.path_for_shard(INDEX_SHARD_NAME)) as con:
        con.execute("ALTER TABLE asset_keys ADD COLUMN added_later TEXT")
    storage.enable_secondary_index("made_later")
    assert storage.has_asset_key_col("added_later")  # a "no" is asked again
    assert storage.has_secondary_index("made_later")
    assert {"last_materialization_timestamp", "cached_status_data", "added_later"} <= (
        storage._asset_key_cols_found
    )
    assert "made_later" in storage._secondary_indexes_found
    storage.close_databases()  # forgotten with the databases
    assert not storage._asset_key_cols_found and not storage._secondary_indexes_found
    storage.dispose()


def test_asset_records_read_are_the_ones_dagsters_storage_reads(tmp_path: Path) -> None:
    """Latest materialisations read from the `asset_keys` rows (each JSON parsed once) are
    Dagster's: read again, after a newer materialisation, and after the asset is wiped (the
    stored record predates the wipe: Dagster then queries the event log)."""
    import time

    key = AssetKey(["credit", "scored"])
    ours, dagsters = HitlSqliteEventLogStorage(str(tmp_path)), SqliteEventLogStorage(str(tmp_path))

    def read() -> list:
        records = ours.get_asset_records([key])
        assert records == dagsters.get_asset_records([key])
        return records

    for entry in _asset_events("run-a", 1.5e9):
        ours.store_event(entry)
    first = read()
    assert first[0].asset_entry.last_materialization_record.run_id == "run-a"
    assert read() == first and len(ours._records_read) == 1
    for entry in _asset_events("run-b", 1.6e9):
        ours.store_event(entry)
    assert read()[0].asset_entry.last_materialization_record.run_id == "run-b"
    from sqlalchemy import text

    with ours.index_connection() as conn:
        (stored,) = conn.execute(text("SELECT last_materialization FROM asset_keys")).one()
    ours.wipe_asset(key)
    planned, *_ = _asset_events("run-c", time.time() + 60)  # the asset's row visible again
    ours.store_event(planned)
    assert read()[0].asset_entry.last_materialization_record is None
    with ours.index_connection() as conn:  # the pre-wipe record left on the row (parsed before)
        conn.execute(text("UPDATE asset_keys SET last_materialization = :r"), {"r": stored})
    assert read()[0].asset_entry.last_materialization_record is None
    ours.dispose()
    dagsters.dispose()

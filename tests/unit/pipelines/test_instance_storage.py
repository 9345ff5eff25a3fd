"""Run and schedule storage open a stamped database without Dagster's script check, and
anything else through Dagster's own code; the files are the ones Dagster's defaults read."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from dagster import DagsterInstance, DagsterRun

from hitl_gate.app.runner import DAGSTER_YAML, dagster_yaml, ensure_dagster_home
from pipelines.event_log_storage import HitlSqliteEventLogStorage
from pipelines.instance_storage import (
    HitlSqliteRunStorage,
    HitlSqliteScheduleStorage,
    head_revision,
)


def _schema(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as con:
        return con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


def _revision(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchall()


def _script_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of Dagster's migration scripts from now on (Alembic's own, counted)."""
    reads: list[str] = []
    read = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]

    def counted(cls, config, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        reads.append(config.get_main_option("script_location"))
        return read(cls, config, *args, **kwargs)

    monkeypatch.setattr(ScriptDirectory, "from_config", classmethod(counted))
    return reads


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two Dagster homes holding one run: ours (`dagster_yaml`) and Dagster's default."""
    root = tmp_path_factory.mktemp("instance_storage")
    ours, dagsters = root / "ours", root / "dagsters"
    ensure_dagster_home(ours)
    dagsters.mkdir()
    (dagsters / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    for home in (ours, dagsters):
        with DagsterInstance.from_config(str(home)) as instance:
            instance.add_run(DagsterRun(job_name="daily", run_id="r1"))
    return ours, dagsters


def _copy(home: Path, to: Path, config: str | None = None) -> Path:
    """A copy of `home` at `to`, its `dagster.yaml` pointing at the copy (or `config`)."""
    shutil.copytree(home, to)
    (to / "dagster.yaml").write_text(config or dagster_yaml(to), encoding="utf-8")
    return to


def test_a_new_home_writes_the_databases_dagster_writes(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    ours, dagsters = homes
    with DagsterInstance.from_config(str(ours)) as instance:
        assert isinstance(instance.run_storage, HitlSqliteRunStorage)
        assert isinstance(instance.schedule_storage, HitlSqliteScheduleStorage)
        assert isinstance(instance.event_log_storage, HitlSqliteEventLogStorage)
    for database in ("history/runs.db", "schedules/schedules.db", "history/runs/index.db"):
        assert _schema(ours / database) == _schema(dagsters / database), database
        assert _revision(ours / database) == _revision(dagsters / database) == [(head_revision(),)]
    # Our home's files read the same with Dagster's own storage.
    read_by_dagster = _copy(ours, tmp_path / "home", DAGSTER_YAML)
    with DagsterInstance.from_config(str(read_by_dagster)) as instance:
        assert not isinstance(instance.run_storage, HitlSqliteRunStorage)
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == ["r1"]


def test_a_stamped_home_opens_without_reading_the_scripts(
    homes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, dagsters = homes
    head_revision()  # read once per process
    reads = _script_reads(monkeypatch)
    with DagsterInstance.from_config(str(ours)) as instance:
        assert instance.get_run_by_id("r1") is not None
        assert instance.event_log_storage.get_asset_records() == []
        assert instance.schedule_storage.all_instigator_state() == []
    assert reads == []
    with DagsterInstance.from_config(str(dagsters)) as instance:  # Dagster's own: three reads
        assert instance.get_run_by_id("r1") is not None
        assert instance.event_log_storage.get_asset_records() == []
    assert len(reads) == 3


def test_a_database_without_its_stamp_goes_through_dagsters_check(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    home = _copy(homes[0], tmp_path / "home")
    for database in ("history/runs.db", "schedules/schedules.db"):
        with sqlite3.connect(home / database) as con:
            con.execute("DELETE FROM alembic_version")
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id("r1") is not None
    for database in ("history/runs.db", "schedules/schedules.db"):
        assert _revision(home / database) != []  # stamped again by Dagster's code


def test_runs_columns_found_are_the_ones_dagster_finds(homes: tuple[Path, Path]) -> None:
    with DagsterInstance.from_config(str(homes[0])) as instance:
        storage = instance.run_storage
        assert isinstance(storage, HitlSqliteRunStorage)
        for _ in range(2):
            assert storage.has_run_stats_index_cols() is True
            assert storage.has_backfill_id_column() is True
        assert storage._has_run_stats_index_cols and storage._has_backfill_id_column

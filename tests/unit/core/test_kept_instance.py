"""Audit connections attach their file to a DuckDB instance the process keeps: one instance
for many short connections, the file checkpointed and free after each, restricted as before.

What both ways of connecting must do alike (restricted, free after close, a crashed writer's
log replayed) runs on both: the kept instance, and an instance of its own per connection (the
path a file that cannot be attached takes, and `database.KEEP_INSTANCES = False`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from hitl_gate.core import database, kept_instance
from hitl_gate.core.database import audit_connection
from hitl_gate.core.quiet_duckdb import quiet_connect


@pytest.fixture(params=[True, False], ids=["kept-instance", "own-instance"])
def either_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Audit connections on a kept instance, then each on an instance of its own."""
    monkeypatch.setattr(database, "KEEP_INSTANCES", request.param)
    return bool(request.param)


def test_each_connection_frees_the_file_when_it_closes(tmp_path: Path, either_way: bool) -> None:
    db = tmp_path / "audit.duckdb"
    for n in range(2):
        with audit_connection(db) as con:
            con.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
            con.execute("INSERT INTO t VALUES (?)", [n])
        assert not Path(f"{db}.wal").exists()  # checkpointed when the connection closed
        with quiet_connect(str(db)) as own:  # nothing holds the file: another process could
            assert own.execute("SELECT count(*) FROM t").fetchall() == [(n + 1,)]


def test_consecutive_connections_share_one_instance_and_free_the_file(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with audit_connection(db) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS v")
    before = kept_instance.stats()
    for n in range(5):
        with audit_connection(db) as con:
            con.execute("INSERT INTO t VALUES (?)", [n])
            databases = "SELECT database_name FROM duckdb_databases() WHERE NOT internal"
            assert con.execute(databases).fetchall() == [("audit",)]  # as an open names it
            assert con.cursor().execute("SELECT count(*) FROM t").fetchall() == [(n + 2,)]
        assert not Path(f"{db}.wal").exists()  # checkpointed when the connection closed
        with quiet_connect(str(db)) as own:  # nothing holds the file: it opens on its own
            assert own.execute("SELECT count(*) FROM t").fetchall() == [(n + 2,)]
    after = kept_instance.stats()
    assert after["instances"] == before["instances"]  # no new instance per connection
    assert after["attaches"] == before["attaches"] + 5


def test_every_connection_stays_restricted(tmp_path: Path, either_way: bool) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    db = tmp_path / "home" / "audit.duckdb"
    for _ in range(2):  # the new instance, then the kept one
        with audit_connection(db, read_only=False) as con:
            with pytest.raises(duckdb.PermissionException):
                con.execute("SELECT * FROM read_blob(?)", [str(secret)]).fetchall()
            with pytest.raises(duckdb.PermissionException):
                con.execute("ATTACH ? AS other", [str(tmp_path / "other.duckdb")])


def test_a_crashed_writers_log_is_replayed_on_attach(tmp_path: Path, either_way: bool) -> None:
    db = tmp_path / "audit.duckdb"
    with audit_connection(db):
        pass
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    writer = quiet_connect(str(db))
    try:
        writer.execute("SET checkpoint_threshold = '1GB'")  # the row stays in the log
        writer.execute("CREATE TABLE late AS SELECT 42 AS v")
        assert Path(f"{db}.wal").stat().st_size > 0
        for name in (db.name, f"{db.name}.wal"):  # the files as a crash would leave them
            shutil.copyfile(tmp_path / name, crashed / name)
    finally:
        writer.close()
    with audit_connection(crashed / db.name, read_only=True) as con:
        assert con.execute("SELECT v FROM late").fetchall() == [(42,)]
    with audit_connection(crashed / db.name) as con:
        assert con.execute("SELECT v FROM late").fetchall() == [(42,)]
    assert not Path(f"{crashed / db.name}.wal").exists()


def test_nested_connections_share_the_file_but_not_across_modes(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with audit_connection(db) as outer:
        outer.execute("CREATE TABLE t AS SELECT 1 AS v")
        with audit_connection(db) as inner:
            assert inner.execute("SELECT v FROM t").fetchall() == [(1,)]
        assert outer.execute("SELECT v FROM t").fetchall() == [(1,)]  # still attached
        with pytest.raises(duckdb.ConnectionException), audit_connection(db, read_only=True):
            pass
    with audit_connection(db, read_only=True) as con:
        assert con.execute("SELECT v FROM t").fetchall() == [(1,)]


def test_idle_instances_are_bounded_and_closed_before_a_fork(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    for n in range(kept_instance.MAX_IDLE_INSTANCES + 2):  # a restriction key each
        with kept_instance.attached_connection(db, False, n, lambda con: None) as con:
            con.execute("SELECT 1")
    assert len(kept_instance._INSTANCES) <= kept_instance.MAX_IDLE_INSTANCES
    kept_instance.close_idle_instances()  # what runs before `os.fork`
    assert not kept_instance._INSTANCES


def test_a_database_a_connection_attached_is_detached_with_it(tmp_path: Path) -> None:
    db, other = tmp_path / "audit.duckdb", tmp_path / "run.duckdb"
    with audit_connection(other) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS v")
    with audit_connection(db, attachable=[other]) as con:
        con.execute("ATTACH ? AS run", [str(other)])
        con.execute("INSERT INTO run.t VALUES (2)")
    with audit_connection(db, attachable=[other]) as con:  # the same kept instance
        databases = "SELECT database_name FROM duckdb_databases() WHERE NOT internal"
        assert con.execute(databases).fetchall() == [("audit",)]
    with quiet_connect(str(other)) as own:  # free, and checkpointed with the row
        assert own.execute("SELECT count(*) FROM t").fetchall() == [(2,)]
    assert not Path(f"{other}.wal").exists()


def test_a_file_replaced_at_its_path_is_read_anew_on_the_kept_instance(tmp_path: Path) -> None:
    """What `tests/fixed_place.py` relies on: a file put back at a path whose instance is
    kept is attached again as it now is (no page of the old file served), and the folder's
    attached files are listed while a connection is open, so a put-back can refuse them."""
    db, saved = tmp_path / "place" / "audit.duckdb", tmp_path / "saved.duckdb"
    with audit_connection(db) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS v")
    shutil.copyfile(db, saved)
    with audit_connection(db) as con:
        con.execute("INSERT INTO t VALUES (2)")
        assert kept_instance.attached_under(tmp_path / "place") == [db.resolve()]
    assert kept_instance.attached_under(tmp_path / "place") == []
    before = kept_instance.stats()
    shutil.rmtree(db.parent)
    db.parent.mkdir()
    shutil.copyfile(saved, db)
    with audit_connection(db) as con:
        assert con.execute("SELECT v FROM t").fetchall() == [(1,)]  # the file put back
    assert kept_instance.stats()["instances"] == before["instances"]  # the kept instance

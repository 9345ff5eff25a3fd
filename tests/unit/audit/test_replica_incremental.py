"""The replica's refresh is incremental: unchanged tables are reused, changed ones rewritten.

A refresh hard-links the previous snapshot's Parquet parts when the rows they hold are
unchanged (same inode: nothing rewritten) and writes only the rows added since as one more
part; any row updated or deleted, a changed table shape, or too many parts, and the table is
written anew. Each snapshot stays self-contained and immutable: a session opened on an older
snapshot keeps reading exactly what it read, whatever later refreshes do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pytest

from hitl_gate.audit import replica
from hitl_gate.audit.replica import ReplicaSnapshot, refresh_replica
from hitl_gate.core.database import audit_connection
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.tamper_home import DOMAIN, add_row


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.duckdb"
    with audit_connection(blank_if_missing(path)) as con:
        for n in (1, 2):
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        add_row(con, "executions", 1, domain=DOMAIN, case_id="C1", action="approve")
    return path


def refresh(db: Path, folder: Path, **options: object) -> ReplicaSnapshot:
    with audit_connection(db) as con:
        return refresh_replica(con, folder, **options)  # type: ignore[arg-type]


def inodes(snapshot: ReplicaSnapshot) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in snapshot.folder.glob("*.parquet")}


def count(snapshot: Path, table: str, where: str = "true") -> int:
    """Rows of `table` as a session on `snapshot` reads them (the views' own file list)."""
    files = sorted(str(p) for p in snapshot.glob(f"{table}.*parquet") if _is_part(p, table))
    with duckdb.connect() as con:
        return int(
            con.execute(f"SELECT count(*) FROM read_parquet(?) WHERE {where}", [files]).fetchall()[
                0
            ][0]
        )


def _is_part(path: Path, table: str) -> bool:
    middle = path.name.removeprefix(table).removesuffix(".parquet")
    return middle == "" or (middle.startswith(".") and middle[1:].isdigit())


def test_an_unchanged_home_rewrites_no_file(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "replica"
    first = refresh(db, folder)
    second = refresh(db, folder)
    assert inodes(second) == inodes(first)  # every part hard-linked, none written
    assert second.rows == first.rows and second.rows["decisions"] == 2
    for part in second.folder.glob("*.parquet"):
        assert part.stat().st_nlink == 2  # a name in each snapshot
        assert not part.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_appended_rows_become_one_more_part_and_other_tables_are_linked(
    db: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "replica"
    first = refresh(db, folder)
    with audit_connection(db) as con:
        add_row(con, "decisions", 3, domain=DOMAIN, case_id="C3", route="auto_decline")
    second = refresh(db, folder)
    before, after = inodes(first), inodes(second)
    assert after["decisions.parquet"] == before["decisions.parquet"]
    assert "decisions.1.parquet" in after and "decisions.1.parquet" not in before
    assert after["executions.parquet"] == before["executions.parquet"]
    assert count(second.folder, "decisions") == 3
    assert count(second.folder, "decisions", "case_id = 'C3'") == 1
    assert count(first.folder, "decisions") == 2  # the older snapshot never sees the change
    with duckdb.connect(str(folder / "audit.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchall() == [(3,)]


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE decisions SET route = 'human_review' WHERE case_id = 'C1'",
        "DELETE FROM decisions WHERE case_id = 'C2'",
        "ALTER TABLE decisions ADD COLUMN note VARCHAR",
    ],
    ids=["updated", "deleted", "reshaped"],
)
def test_a_changed_row_rewrites_the_table_and_old_readers_keep_theirs(
    db: Path, tmp_path: Path, change: str
) -> None:
    """An insider's in-place edit (or a redaction) is never hidden behind a linked old file."""
    folder = tmp_path / "replica"
    first = refresh(db, folder)
    session = duckdb.connect(str(folder / "audit.duckdb"), read_only=True)  # opened on `first`
    routes = session.execute("SELECT case_id, route FROM decisions ORDER BY 1").fetchall()
    with audit_connection(db) as con:
        con.execute(change)
        add_row(con, "executions", 2, domain=DOMAIN, case_id="C2", action="approve")
        expected = con.execute("SELECT * FROM decisions ORDER BY case_id").fetchall()
    second = refresh(db, folder)
    before, after = inodes(first), inodes(second)
    assert after["decisions.parquet"] != before["decisions.parquet"]
    assert not any(name.startswith("decisions.1") for name in after)
    assert after["executions.parquet"] == before["executions.parquet"]
    with duckdb.connect() as con:
        got = con.execute(
            "SELECT * FROM read_parquet(?) ORDER BY case_id",
            [str(second.folder / "decisions.parquet")],
        ).fetchall()
    assert got == expected
    assert session.execute("SELECT case_id, route FROM decisions ORDER BY 1").fetchall() == routes
    session.close()


def test_no_reuse_rewrites_everything(db: Path, tmp_path: Path) -> None:
    """Retention's refresh: no file of an earlier snapshot is carried over."""
    folder = tmp_path / "replica"
    first = refresh(db, folder)
    second = refresh(db, folder, reuse=False)
    before, after = inodes(first), inodes(second)
    assert set(after) == set(before) and not set(after.values()) & set(before.values())


def test_parts_are_compacted_past_the_limit(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica, "MAX_PARTS", 3)
    folder = tmp_path / "replica"
    snapshots = [refresh(db, folder)]
    for n in range(3, 7):
        with audit_connection(db) as con:
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        snapshots.append(refresh(db, folder))
    parts = [sorted(n for n in inodes(s) if n.startswith("decisions.")) for s in snapshots]
    assert parts[2] == ["decisions.1.parquet", "decisions.2.parquet", "decisions.parquet"]
    assert parts[3] == ["decisions.parquet"]  # three parts: written anew, in one
    assert parts[4] == ["decisions.1.parquet", "decisions.parquet"]
    assert [count(s.folder, "decisions") for s in snapshots] == [2, 3, 4, 5, 6]


def test_a_snapshot_missing_a_part_is_not_reused(db: Path, tmp_path: Path) -> None:
    """A damaged previous snapshot is never linked from: the table is written anew."""
    folder = tmp_path / "replica"
    first = refresh(db, folder)
    (first.folder / "decisions.parquet").unlink()
    second = refresh(db, folder)
    assert count(second.folder, "decisions") == 2
    assert inodes(second)["executions.parquet"] == inodes(first)["executions.parquet"]
    assert os.stat(second.folder / "decisions.parquet").st_nlink == 1


def test_a_stamp_counts_and_hashes_as_a_query_per_table_does(db: Path, tmp_path: Path) -> None:
    """The stamps of all tables come from one grouped query; each must equal what a plain
    count and hash sum of that table says, for the rows up to the previous snapshot's largest
    rowid and for all of them (a row deleted before it and rows added past it)."""
    refresh(db, tmp_path / "replica")
    with audit_connection(db) as con:
        con.execute("DELETE FROM decisions WHERE case_id = 'C1'")
        for n in (3, 4):
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        previous = replica._previous_tables(tmp_path / "replica")
        tables = ["decisions", "executions", "verdicts"]
        stamps = replica._stamps(con, tables, previous, replica._columns(con, tables))
        for table in tables:
            upto = previous[table].copy.max_rowid
            every = con.execute(
                f"SELECT count(*), coalesce(max(rowid), -1), "
                f"coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM {table} AS t"
            ).fetchall()[0]
            old = con.execute(
                f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR "
                f"FROM {table} AS t WHERE rowid <= {upto}"
            ).fetchall()[0]
            stamp = stamps[table]
            assert (stamp.rows, stamp.max_rowid, stamp.hash_sum) == every
            assert (stamp.old_rows, stamp.old_hash) == old
    assert stamps["decisions"].rows == 3 and stamps["decisions"].old_rows == 1
    assert stamps["verdicts"].rows == 0 and stamps["verdicts"].hash_sum == "0"

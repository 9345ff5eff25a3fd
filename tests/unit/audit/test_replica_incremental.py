"""The replica's refresh is incremental: unchanged tables are reused, changed ones rewritten.

A refresh hard-links the previous snapshot's Parquet parts when the rows they hold are
unchanged (same inode: nothing rewritten) and writes only the rows added since as one more
part; any row updated or deleted, a changed table shape, or too many parts, and the table is
written anew. Each snapshot stays self-contained and immutable: a session opened on an older
snapshot keeps reading exactly what it read, whatever later refreshes do.
"""

from __future__ import annotations

import json
import math
import os
import random
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
    first = refresh(db, folder, merge_rows=0)  # no merging (`test_small_parts_merge_...`)
    with audit_connection(db) as con:
        add_row(con, "decisions", 3, domain=DOMAIN, case_id="C3", route="auto_decline")
    second = refresh(db, folder, merge_rows=0)
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
    first = refresh(db, folder, merge_rows=0)  # no merging: a new row is a new part
    session = duckdb.connect(str(folder / "audit.duckdb"), read_only=True)  # opened on `first`
    routes = session.execute("SELECT case_id, route FROM decisions ORDER BY 1").fetchall()
    with audit_connection(db) as con:
        con.execute(change)
        add_row(con, "executions", 2, domain=DOMAIN, case_id="C2", action="approve")
        expected = con.execute("SELECT * FROM decisions ORDER BY case_id").fetchall()
    second = refresh(db, folder, merge_rows=0)
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


def test_small_parts_merge_into_the_new_one(db: Path, tmp_path: Path) -> None:
    """Rows added one a refresh: the new part takes over the parts at the end that hold at
    most twice its rows, within the limit's rows rewritten, and each snapshot still reads
    every row."""
    folder = tmp_path / "replica"
    snapshots = [refresh(db, folder, merge_rows=4)]
    for n in range(3, 7):
        with audit_connection(db) as con:
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        snapshots.append(refresh(db, folder, merge_rows=4))
    parts = [sorted(n for n in inodes(s) if n.startswith("decisions.")) for s in snapshots]
    one, two = ["decisions.parquet"], ["decisions.1.parquet", "decisions.parquet"]
    # rows per part: 2 | 2 + 1 = 3 | 3, 1 | 3 + 1 + 1 = 5 | 5, 1
    assert parts == [one, one, two, one, two]
    assert inodes(snapshots[4])["decisions.parquet"] == inodes(snapshots[3])["decisions.parquet"]
    manifest = replica.current_manifest(folder)
    assert manifest is not None and manifest["tables"]["decisions"]["part_rows"] == [5, 1]
    assert [count(s.folder, "decisions") for s in snapshots] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("part_rows", "new_rows", "merge_rows", "kept"),
    [
        ((), 5, 10, 0),
        ((0,), 1, 10, 0),  # an empty table's part is replaced by its first rows
        ((4, 2, 1), 1, 10, 0),  # 1 + 1, + 2, + 4: 8 rows in one part
        ((4, 2, 1), 1, 6, 1),  # the 4 would make 7 rows rewritten: it stays
        ((9, 1), 3, 100, 1),  # the 9 is more than twice 1 + 3
        ((10, 10), 1, 1_000, 2),  # nothing at the end within twice the new part
        ((3,), 1_000, 1_000, 0),  # a large append takes a small part along
        ((1_000,), 1_000, 1_000, 0),  # ... up to the limit's rows rewritten
        ((1_001,), 1_000, 1_000, 1),
    ],
)
def test_kept_parts(part_rows: tuple[int, ...], new_rows: int, merge_rows: int, kept: int) -> None:
    assert replica.kept_parts(part_rows, new_rows, merge_rows) == kept


def test_many_refreshes_keep_parts_bounded_and_never_rewrite_the_history(
    db: Path, tmp_path: Path
) -> None:
    """Twelve refreshes adding one row each: no refresh writes more than the merge limit's
    rows besides its new one (a limit on the number of parts rewrote the whole table every so
    often), the parts stay within rows / (limit / 2) + log2(limit) + 1, and every snapshot
    reads exactly the live table (the policy over thousands of refreshes:
    `test_merged_parts_stay_bounded_over_a_long_history`)."""
    limit, folder = 4, tmp_path / "replica"
    previous = refresh(db, folder, merge_rows=limit)
    for n in range(3, 15):
        with audit_connection(db) as con:
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        snapshot = refresh(db, folder, merge_rows=limit)
        manifest = replica.current_manifest(folder)
        assert manifest is not None
        entry = manifest["tables"]["decisions"]
        kept = {p for p in entry["parts"] if inodes(previous).get(p) == inodes(snapshot)[p]}
        written = sum(r for p, r in zip(entry["parts"], entry["part_rows"], strict=True)
                      if p not in kept)  # fmt: skip
        assert written <= limit + 1, (n, entry["part_rows"])
        assert len(entry["parts"]) <= n / (limit / 2) + 2 + 1
        assert sum(entry["part_rows"]) == n == count(snapshot.folder, "decisions")
        previous = snapshot
    assert sorted(entry["part_rows"], reverse=True) == entry["part_rows"]
    with audit_connection(db) as con:
        live = con.execute("SELECT case_id FROM decisions ORDER BY case_id").fetchall()
    files = [str(previous.folder / p) for p in entry["parts"]]
    with duckdb.connect() as con:
        read = con.execute(
            "SELECT case_id FROM read_parquet(?) ORDER BY case_id", [files]
        ).fetchall()
    assert read == live


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_parts_stay_bounded_over_a_long_history(seed: int) -> None:
    """`kept_parts` over 3,000 refreshes of random sizes (most small, some above the limit):
    no refresh rewrites more than the limit's rows besides its new ones, and the parts below
    half the limit stay within log2(limit) + 1 (the large ones are at most rows / (limit / 2)),
    so the history is never rewritten and its small parts never pile up."""
    rng = random.Random(seed)
    limit, parts = 1_000, []
    for _ in range(3_000):
        new = rng.choice([0, 1, 3, 10, 50, 200, 600, 1_500])
        if not new:
            continue
        kept = replica.kept_parts(parts, new, limit)
        assert sum(parts[kept:]) <= limit  # rewritten besides the new rows
        parts = [*parts[:kept], sum(parts[kept:]) + new]
        small = [rows for rows in parts if rows < limit / 2]
        assert len(small) <= math.log2(limit) + 1, parts
        assert len(parts) - len(small) <= sum(parts) / (limit / 2)


def test_an_edited_old_row_shows_after_many_merges(db: Path, tmp_path: Path) -> None:
    """Merged or not, a row changed in place under a part that is only linked rewrites the
    table: the replica shows the edit."""
    folder = tmp_path / "replica"
    for n in range(3, 12):
        with audit_connection(db) as con:
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        before = refresh(db, folder, merge_rows=4)
    assert len(replica.current_manifest(folder)["tables"]["decisions"]["parts"]) > 1  # type: ignore[index]
    with audit_connection(db) as con:
        con.execute("UPDATE decisions SET route = 'auto_decline' WHERE case_id = 'C1'")
    after = refresh(db, folder, merge_rows=4)
    assert count(after.folder, "decisions", "route = 'auto_decline' AND case_id = 'C1'") == 1
    assert count(before.folder, "decisions", "route = 'auto_decline' AND case_id = 'C1'") == 0
    assert count(after.folder, "decisions") == 11


def test_a_manifest_without_part_sizes_is_linked_and_never_merged(db: Path, tmp_path: Path) -> None:
    """A snapshot written before parts had sizes (an upgraded home): its parts are linked, not
    the history rewritten, new rows go to parts after them, and those old parts never merge
    (their bounds are unknown); an edit still rewrites the table."""
    folder = tmp_path / "replica"
    first = refresh(db, folder, merge_rows=0)
    with audit_connection(db) as con:
        add_row(con, "decisions", 3, domain=DOMAIN, case_id="C3", route="auto_approve")
    legacy = refresh(db, folder, merge_rows=0)  # decisions.parquet (2 rows) and .1 (1 row)
    manifest_path = legacy.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for entry in manifest["tables"].values():
        del entry["part_rows"], entry["part_max_rowids"]
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    snapshots = []
    for n in (4, 5, 6):
        with audit_connection(db) as con:
            add_row(con, "decisions", n, domain=DOMAIN, case_id=f"C{n}", route="auto_approve")
        snapshots.append(refresh(db, folder, merge_rows=100))
    names = inodes(snapshots[-1])
    assert names["decisions.parquet"] == inodes(first)["decisions.parquet"]
    assert names["decisions.1.parquet"] == inodes(legacy)["decisions.1.parquet"]
    entry = replica.current_manifest(folder)["tables"]["decisions"]  # type: ignore[index]
    assert entry["part_rows"] == [0, 3, 3]  # rows 4-6 merged after the unsized parts
    assert entry["part_max_rowids"][0] == replica.UNSIZED
    assert [count(s.folder, "decisions") for s in snapshots] == [4, 5, 6]
    assert count(snapshots[-1].folder, "decisions", "case_id IN ('C3', 'C6')") == 2
    with audit_connection(db) as con:
        con.execute("UPDATE decisions SET route = 'auto_decline' WHERE case_id = 'C1'")
    edited = refresh(db, folder, merge_rows=100)
    assert count(edited.folder, "decisions", "route = 'auto_decline'") == 1
    assert count(edited.folder, "decisions") == 6


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

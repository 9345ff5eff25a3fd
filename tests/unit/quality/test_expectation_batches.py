"""The views GE validates: the checked days' rows read from their own files, the stage's schema.

The checked view reads only the checked days' files (GE's queries each opened every day's file
before); it must still show exactly the checked days' rows with the columns and types of all
the stage's files, and the trailing row counts must equal those counted over every file.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.quality.expectation_batches import _connect, prepare_stage

DAY = date(2018, 1, 10)


def _store(warehouse: Path, day: date, rows: int, **extra: pl.Series) -> None:
    folder = warehouse / "d" / "s"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame({"amount": [float(n) for n in range(rows)]}).with_columns(
        partition_date=pl.lit(day), **extra
    )
    frame.write_parquet(folder / f"{day}.parquet")


def _query(warehouse: Path, sql: str) -> list[tuple]:
    with _connect(warehouse) as con:
        return con.execute(sql).fetchall()


def _view_sql(warehouse: Path, view: str) -> str:
    rows = _query(warehouse, f"SELECT sql FROM duckdb_views() WHERE view_name = '{view}'")
    return str(rows[0][0])


def test_the_checked_view_reads_the_checked_days_files_only(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    for offset, rows in enumerate((5, 3, 4, 7)):
        _store(warehouse, DAY + timedelta(days=offset), rows)
    checked = [DAY + timedelta(days=1), DAY + timedelta(days=3), DAY + timedelta(days=9)]
    views = prepare_stage(warehouse, "d", "s", checked, None)
    sql = _view_sql(warehouse, views.checked)
    assert f"{checked[0]}.parquet" in sql and f"{checked[1]}.parquet" in sql
    assert f"{DAY}.parquet" not in sql and "*.parquet" not in sql  # no file of another day
    rows = _query(warehouse, f"SELECT partition_date, count(*) FROM {views.checked} GROUP BY 1")
    assert sorted(rows) == [(checked[0], 3), (checked[1], 7)]  # the 10th day has no file


def test_a_column_added_since_keeps_the_stages_whole_schema(tmp_path: Path) -> None:
    """Older days lack `grade` and store `term` narrower: the checked old day still shows
    `grade` (null) and `term` widened, as a view over every file would."""
    warehouse = tmp_path / "warehouse"
    _store(warehouse, DAY, 2, term=pl.Series([36, 60], dtype=pl.Int32))
    newer = {"grade": pl.Series(["A", "B", "C"]), "term": pl.Series([36] * 3, dtype=pl.Int64)}
    _store(warehouse, DAY + timedelta(days=1), 3, **newer)
    views = prepare_stage(warehouse, "d", "s", [DAY], None)
    with _connect(warehouse) as con:
        every = con.execute(
            "DESCRIBE SELECT * FROM read_parquet('d/s/*.parquet', union_by_name = true)"
        ).fetchall()
        shown = con.execute(f"DESCRIBE SELECT * FROM {views.checked}").fetchall()
        rows = con.execute(f"SELECT grade, term FROM {views.checked} ORDER BY term").fetchall()
    assert [c[:2] for c in shown] == [c[:2] for c in every]
    assert ("term", "BIGINT") in [c[:2] for c in shown]
    assert rows == [(None, 36), (None, 60)]


def test_trailing_counts_read_the_window_and_match_every_file(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    counts = {DAY - timedelta(days=9): 100, DAY - timedelta(days=3): 4, DAY - timedelta(days=1): 6}
    for day, rows in {**counts, DAY: 5, DAY + timedelta(days=1): 20}.items():
        _store(warehouse, day, rows)
    checked = [DAY, DAY + timedelta(days=1)]
    views = prepare_stage(warehouse, "d", "s", checked, trailing_days=3)
    got = _query(
        warehouse,
        f"SELECT partition_date, row_count, trailing_median FROM {views.row_counts} ORDER BY 1",
    )
    # the day 9 days back (100 rows) is outside both windows; DAY+1 sees DAY-1 and DAY
    assert got == [(DAY, 5, 5.0), (DAY + timedelta(days=1), 20, 5.5)]
    # the same figures counted over every file
    every = (
        duckdb.connect()
        .execute(
            f"""
        WITH counts AS (SELECT partition_date, count(*) AS n
            FROM read_parquet('{warehouse}/d/s/*.parquet') GROUP BY ALL)
        SELECT c.partition_date, c.n, (SELECT median(h.n) FROM counts h
            WHERE h.partition_date < c.partition_date AND h.partition_date >= c.partition_date - 3)
        FROM counts c WHERE c.partition_date IN ({", ".join(f"DATE '{d}'" for d in checked)})
        ORDER BY 1
        """
        )
        .fetchall()
    )
    assert got == every


def test_no_checked_day_and_no_stored_day_give_empty_views(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    _store(warehouse, DAY, 3)
    for days in ([], [DAY - timedelta(days=30)]):
        views = prepare_stage(warehouse, "d", "s", days, trailing_days=7)
        assert _query(warehouse, f"SELECT count(*) FROM {views.checked}") == [(0,)]
        assert _query(warehouse, f"SELECT count(*) FROM {views.row_counts}") == [(0,)]
        columns = _query(warehouse, f"DESCRIBE SELECT * FROM {views.checked}")
        assert [c[0] for c in columns] == ["amount", "partition_date"]


def test_the_stage_view_is_bound_again_when_its_folder_changes(tmp_path: Path) -> None:
    """The view over every file is kept while the folder's listing is unchanged: a new day's
    file, or a day's file written again, with a new column shows in the checked old day."""
    warehouse = tmp_path / "warehouse"
    _store(warehouse, DAY, 2)
    _store(warehouse, DAY + timedelta(days=1), 3)
    views = prepare_stage(warehouse, "d", "s", [DAY], None)
    assert [c[0] for c in _query(warehouse, f"DESCRIBE {views.checked}")] == [
        "amount",
        "partition_date",
    ]
    prepare_stage(warehouse, "d", "s", [DAY], None)  # unchanged: kept
    _store(warehouse, DAY + timedelta(days=2), 1, grade=pl.Series(["A"]))
    prepare_stage(warehouse, "d", "s", [DAY], None)
    assert "grade" in [c[0] for c in _query(warehouse, f"DESCRIBE {views.checked}")]
    assert _query(warehouse, f"SELECT count(*), count(grade) FROM {views.checked}") == [(2, 0)]
    (warehouse / "d" / "s" / f"{DAY + timedelta(days=2)}.parquet").unlink()
    _store(warehouse, DAY + timedelta(days=1), 3, tier=pl.Series([1, 2, 3]))  # written again
    prepare_stage(warehouse, "d", "s", [DAY], None)
    columns = [c[0] for c in _query(warehouse, f"DESCRIBE {views.checked}")]
    assert "tier" in columns and "grade" not in columns


def test_a_given_connection_is_used_left_open_and_rolled_back_on_failure(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    _store(warehouse, DAY, 4)
    with _connect(warehouse) as con:
        views = prepare_stage(warehouse, "d", "s", [DAY], None, connection=con)
        assert con.execute(f"SELECT count(*) FROM {views.checked}").fetchall() == [(4,)]
        (warehouse / "d" / "s" / f"{DAY}.parquet").write_bytes(b"not parquet")
        with pytest.raises(duckdb.Error):
            prepare_stage(warehouse, "d", "s", [DAY + timedelta(days=1)], 7, connection=con)
        # no transaction left open: the connection goes on, the failed preparation undone
        assert con.execute("SELECT partition_date FROM checked_days").fetchall() == [(DAY,)]
        con.execute("BEGIN TRANSACTION")
        con.execute("COMMIT")

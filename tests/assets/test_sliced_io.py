"""Slices of a day: row ranges read from a scan, and the day's file written slice by slice.

A sliced step's output must be the same one-file-per-day Parquet a whole-frame step writes:
readable, split by day for a range, an empty file (with the columns) for a day without rows,
and never visible half-written.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
from dagster import AssetKey, build_output_context

from hitl_gate.core.day_files import StagedPartitions
from hitl_gate.core.settings import HitlSettings
from hitl_gate.core.slices import OutputSink, read_slices, row_count, slice_ranges, write_each
from pipelines.io_managers import PolarsParquetIOManager


def slice_rows_from_environment(environ: dict[str, str]) -> int:
    return HitlSettings.from_environ(environ).slice_rows


D1, D2, D3 = date(2018, 1, 1), date(2018, 1, 2), date(2018, 1, 3)
KEYS = ["2018-01-01", "2018-01-02", "2018-01-03"]


def _day_frame(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition_date": [D1 if i % 3 else D3 for i in range(n)],
            "case_id": [f"c{i}" for i in range(n)],
            "codes": [[f"r{i}"] * (i % 3) for i in range(n)],
            "pd": [i / n for i in range(n)],
        }
    )


def test_slice_ranges_cover_every_row_once() -> None:
    assert slice_ranges(100, 37) == [(0, 37), (37, 37), (74, 26)]
    assert slice_ranges(37, 37) == [(0, 37)]
    assert slice_ranges(0, 37) == [(0, 0)]  # an empty day is one (empty) slice
    with pytest.raises(ValueError, match="at least 1"):
        slice_ranges(10, 0)


def test_slices_of_a_scan_are_the_frame_in_order(tmp_path) -> None:
    frame = _day_frame(100)
    frame.write_parquet(tmp_path / "f.parquet", row_group_size=10)
    scan = pl.scan_parquet(tmp_path / "f.parquet")
    assert row_count(scan) == 100
    parts = list(read_slices(scan, ["pd", "case_id", "absent"], slice_ranges(100, 37)))
    assert [p.height for p in parts] == [37, 37, 26]
    assert pl.concat(parts).equals(frame.select("pd", "case_id"))


def test_staged_partitions_are_renamed_into_place_only_at_handle_output(tmp_path) -> None:
    manager = PolarsParquetIOManager(base_dir=str(tmp_path))
    folder = tmp_path / "d" / "stage"
    folder.mkdir(parents=True)
    old = pl.DataFrame({"x": [1]})
    old.write_parquet(folder / "2018-01-01.parquet")
    frame = _day_frame(100)
    with manager.partition_writer(["d", "stage"], KEYS) as writer:
        sink = OutputSink(writer)
        for offset, length in slice_ranges(100, 37):
            sink.write(frame.slice(offset, length))
        staged = sink.result()
    assert isinstance(staged, StagedPartitions) and staged.rows == 100
    # Atomic: until the IO manager commits, readers still see the previous file.
    assert pl.read_parquet(folder / "2018-01-01.parquet").equals(old)
    assert not (folder / "2018-01-03.parquet").exists()
    manager.handle_output(build_output_context(asset_key=AssetKey(["d", "stage"])), staged)
    for day, key in zip((D1, D2, D3), KEYS, strict=True):
        stored = pl.read_parquet(folder / f"{key}.parquet")
        expected = frame.filter(pl.col("partition_date") == day)
        assert stored.equals(expected), key  # same rows, order and types; D2 empty, typed
    assert sorted(p.name for p in folder.iterdir()) == [f"{k}.parquet" for k in KEYS]


def test_an_error_while_writing_slices_leaves_the_stored_files_alone(tmp_path) -> None:
    manager = PolarsParquetIOManager(base_dir=str(tmp_path))
    folder = tmp_path / "d" / "stage"
    folder.mkdir(parents=True)
    old = pl.DataFrame({"x": [1]})
    old.write_parquet(folder / "2018-01-01.parquet")
    with pytest.raises(RuntimeError), manager.partition_writer(["d", "stage"], KEYS) as writer:
        writer.write(_day_frame(10))
        raise RuntimeError("step failed mid-day")
    assert pl.read_parquet(folder / "2018-01-01.parquet").equals(old)
    assert [p.name for p in folder.iterdir()] == ["2018-01-01.parquet"]  # no temporary left


def test_a_one_slice_day_stays_one_frame_in_memory() -> None:
    sink = OutputSink(None)
    frame = _day_frame(10)
    sink.write(frame)
    assert sink.result() is frame  # the whole-frame path: no copy, no file


def test_slice_rows_come_from_the_environment() -> None:
    assert slice_rows_from_environment({}) == 1_000_000
    assert slice_rows_from_environment({"HITL_SLICE_ROWS": "37"}) == 37
    with pytest.raises(ValueError, match="HITL_SLICE_ROWS"):
        slice_rows_from_environment({"HITL_SLICE_ROWS": "0"})


def test_write_each_releases_a_slice_before_the_next_is_read() -> None:
    """The slice a step made its output from is gone when the next slice is read: at most one
    input slice is held, not two (a `for` loop's variable keeps the previous one)."""
    day = _day_frame(10)
    earlier: list[weakref.ref[pl.DataFrame]] = []

    def slices() -> Iterator[pl.DataFrame]:
        for offset in range(0, day.height, 4):
            assert all(ref() is None for ref in earlier), "the previous slice is still held"
            frame = day.slice(offset, 4).with_columns(pl.col("pd") * 2)  # a frame of its own
            earlier.append(weakref.ref(frame))
            yield frame
            del frame  # as `read_slices` does: a slice yielded is not kept here

    sink = OutputSink(None)
    write_each(slices(), lambda frame: frame.select("case_id", "pd"), sink)
    assert len(earlier) == 3 and sink.rows == 10
    expected = day.select("case_id", pl.col("pd") * 2)
    assert sink.result().equals(expected)  # type: ignore[union-attr]

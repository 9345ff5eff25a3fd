"""The Parquet IO manager: daily partition files out, whole frames or scans in."""

from __future__ import annotations

from datetime import date

import polars as pl
from dagster import (
    AssetKey,
    DailyPartitionsDefinition,
    PartitionKeyRange,
    PythonObjectDagsterType,
    build_input_context,
)

from assets.common import collect_columns
from hitl_gate.core.day_files import split_by_day
from pipelines.io_managers import PolarsParquetIOManager

D1, D2, D3 = date(2018, 1, 1), date(2018, 1, 2), date(2018, 1, 3)


def test_one_day_is_passed_through_and_a_range_split_in_one_pass() -> None:
    day = pl.DataFrame({"partition_date": [D1, D1], "x": [1, 2]})
    ((key, part),) = list(split_by_day(day, ["2018-01-01"]))
    assert key == "2018-01-01" and part is day  # no copy for the daily run

    frame = pl.DataFrame({"partition_date": [D1, D3, D1, D2], "x": [1, 2, 3, 4]})
    parts = dict(split_by_day(frame, ["2018-01-01", "2018-01-02", "2018-01-03"]))
    assert parts["2018-01-01"]["x"].to_list() == [1, 3]  # order kept
    assert parts["2018-01-02"]["x"].to_list() == [4]
    assert parts["2018-01-03"]["x"].to_list() == [2]


def test_days_without_rows_get_an_empty_file_and_other_days_are_not_written() -> None:
    frame = pl.DataFrame({"partition_date": [D1, D3], "x": [1, 2]})
    parts = dict(split_by_day(frame, ["2018-01-02"]))
    assert parts["2018-01-02"].height == 0 and parts["2018-01-02"].schema == frame.schema
    mixed = dict(split_by_day(frame, ["2018-01-01"]))
    assert mixed["2018-01-01"]["x"].to_list() == [1]


def _stored(tmp_path, days: dict[str, pl.DataFrame]) -> PolarsParquetIOManager:
    manager = PolarsParquetIOManager(base_dir=str(tmp_path))
    folder = tmp_path / "d" / "stage"
    folder.mkdir(parents=True)
    for key, frame in days.items():
        frame.write_parquet(folder / f"{key}.parquet")
    return manager


def _input(annotation: type, first: str, last: str):
    return build_input_context(
        asset_key=AssetKey(["d", "stage"]),
        dagster_type=PythonObjectDagsterType(annotation),
        asset_partition_key_range=PartitionKeyRange(first, last),
        asset_partitions_def=DailyPartitionsDefinition(start_date="2018-01-01"),
    )


def test_a_lazyframe_input_is_a_scan_reading_only_what_the_step_asks_for(tmp_path) -> None:
    manager = _stored(
        tmp_path,
        {
            "2018-01-01": pl.DataFrame({"partition_date": [D1], "x": [1], "wide": ["a"]}),
            # a later partition stored with a column more: stacked as before, nulls elsewhere
            "2018-01-02": pl.DataFrame(
                {"partition_date": [D2, D2], "x": [2, 3], "wide": ["b", "c"], "new": [1.0, 2.0]}
            ),
        },
    )
    eager = manager.load_input(_input(pl.DataFrame, "2018-01-01", "2018-01-02"))
    lazy = manager.load_input(_input(pl.LazyFrame, "2018-01-01", "2018-01-02"))
    assert isinstance(eager, pl.DataFrame) and isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(eager)
    assert eager["new"].to_list() == [None, 1.0, 2.0]
    narrow = collect_columns(lazy, ["x", "missing_in_old_partitions", "partition_date"])
    assert narrow.columns == ["x", "partition_date"] and narrow["x"].to_list() == [1, 2, 3]
    one_day = manager.load_input(_input(pl.LazyFrame, "2018-01-02", "2018-01-02"))
    assert one_day.collect().height == 2

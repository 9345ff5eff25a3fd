"""The Parquet IO manager's split of a frame into daily partition files."""

from __future__ import annotations

from datetime import date

import polars as pl

from pipelines.io_managers import split_by_day

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

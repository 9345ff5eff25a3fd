"""The outbox writer: pages appended to one pending file per day, renamed into place at commit.

A refused seal (any error inside the `with` block) leaves every day's outbox file as it was and
no temporary file behind; committed files hold the pages' rows of their day in page order, an
empty file for a day without executions.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.execution.outbox import OutboxWriter

DAYS = [date(2018, 3, 18), date(2018, 3, 19), date(2018, 3, 20)]


def _page(ids: list[str], day: date) -> pl.DataFrame:
    return pl.DataFrame(
        {"case_id": ids, "partition_date": [day] * len(ids), "action": ["approve"] * len(ids)}
    )


def _pages() -> list[pl.DataFrame]:
    return [
        pl.concat([_page(["a1", "a2"], DAYS[0]), _page(["b1"], DAYS[1])]),
        _page(["a3"], DAYS[0]),
        _page([], DAYS[0]),
        pl.concat([_page(["a4"], DAYS[0]), _page(["b2", "b3"], DAYS[1])]),
    ]


def test_pages_become_one_file_per_day(tmp_path: Path) -> None:
    with OutboxWriter(tmp_path, DAYS) as written:
        for page in _pages():
            written.write(page)
        written.commit()
    whole = pl.concat(_pages())
    for day in DAYS:
        stored = pl.read_parquet(tmp_path / f"{day}.parquet")
        assert_frame_equal(stored, whole.filter(pl.col("partition_date") == day))
    assert pl.read_parquet(tmp_path / f"{DAYS[2]}.parquet").height == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{d}.parquet" for d in DAYS]


@pytest.mark.parametrize("pages", [1, 4])
def test_a_refused_seal_leaves_the_outbox_as_it_was(tmp_path: Path, pages: int) -> None:
    before = {day: _page([f"old-{day}"], day) for day in DAYS[:2]}
    for day, frame in before.items():
        frame.write_parquet(tmp_path / f"{day}.parquet")
    with pytest.raises(RuntimeError, match="refused"), OutboxWriter(tmp_path, DAYS) as written:
        for page in _pages()[:pages]:
            written.write(page)
        raise RuntimeError("the output seal refused a row")  # as `SealRefused` is raised
    for day, frame in before.items():
        assert_frame_equal(pl.read_parquet(tmp_path / f"{day}.parquet"), frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{d}.parquet" for d in DAYS[:2]]


def test_no_page_no_outbox(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no page"), OutboxWriter(tmp_path, DAYS) as written:
        written.commit()
    assert list(tmp_path.iterdir()) == []

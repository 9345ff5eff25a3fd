"""Pages of the days' executions cut by case-id ranges from one sort, not a top-N per page.

The notices and the outbox read the days' executions in case order, `page_rows` at a time.
Each page used to be a keyset top-N (`case_id > last ORDER BY case_id LIMIT n`) over all the
days' executions, so every page read the whole day. Now `page_bounds` sorts the days' case ids
once and each page reads the range between two bounds. Shown: the bounds are every
`page_rows`-th case id; the pages are exactly the old keyset pages (rows, order, the empty last
page when the day fills its pages), whatever the domain's other days and other domains hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.execution.execute import executed_pages, page_bounds
from tests.unit.audit.tamper_home import add_rows

DAYS = [date(2018, 3, 5), date(2018, 3, 6)]


def _keyset_pages(
    con: duckdb.DuckDBPyConnection, domain: str, page_rows: int
) -> list[pl.DataFrame]:
    """The old pages: a top-N after the previous page's last case id, until a short page."""
    pages, after = [], None
    while True:
        page = query_frame(
            con,
            "SELECT * FROM executions WHERE domain = ? AND partition_date IN "
            "(SELECT unnest(?::DATE[])) AND (?::VARCHAR IS NULL OR case_id > ?) "
            "ORDER BY case_id LIMIT ?",
            [domain, DAYS, after, after, page_rows],
        )
        pages.append(page)
        if page.height < page_rows:
            return pages
        after = page["case_id"][-1]


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """23 executions of domain `d` over the two days (inserted out of case order), plus rows
    of another day and another domain that no page may hold."""
    with audit_connection(tmp_path / "audit.duckdb") as con:
        ids = [f"k{(i * 7) % 23:02d}" for i in range(23)]
        add_rows(
            con,
            "executions",
            [(n, {"domain": "d", "case_id": c, "partition_date": DAYS[n % 2]})
             for n, c in enumerate(ids)]
            + [(100, {"domain": "d", "case_id": "k05x", "partition_date": date(2018, 3, 9)}),
               (101, {"domain": "e", "case_id": "k06x", "partition_date": DAYS[0]})],
        )  # fmt: skip
        yield con


@pytest.mark.parametrize("page_rows", [1, 5, 23, 100])
def test_pages_are_the_keyset_pages(con: duckdb.DuckDBPyConnection, page_rows: int) -> None:
    expected = _keyset_pages(con, "d", page_rows)
    pages = list(executed_pages(con, "d", DAYS, page_rows))
    assert len(pages) == len(expected)
    for page, old in zip(pages, expected, strict=True):
        assert_frame_equal(page, old, check_exact=True)
    assert sum(p.height for p in pages) == 23
    assert pages[-1].height == (23 % page_rows if page_rows <= 23 else 23)


def test_bounds_are_every_page_rows_th_case_id(con: duckdb.DuckDBPyConnection) -> None:
    ordered = sorted(f"k{i:02d}" for i in range(23))
    assert page_bounds(con, "d", DAYS, 5) == ordered[4::5]
    assert page_bounds(con, "d", DAYS, 23) == [ordered[-1]]
    assert page_bounds(con, "d", DAYS, 24) == []
    assert page_bounds(con, "nobody", DAYS, 5) == []

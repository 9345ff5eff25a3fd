"""DuckDB connections without the progress bar: one small module, so that a light child
process (the verifier's segment scan) can use it without importing the database layer."""

from __future__ import annotations

from typing import Any

import duckdb


def quiet_connect(database: str = ":memory:", **options: Any) -> duckdb.DuckDBPyConnection:
    """`duckdb.connect(database, **options)` without DuckDB's progress bar.

    DuckDB draws the bar on stdout (a terminal or not) for any query running over two seconds:
    on a loaded machine or a big day it landed in the middle of `hitl`'s output, e.g. between
    the demo's printed counts. It is a session option (DuckDB 2 refuses it in `connect`'s
    config), so it is set on each connection the library opens; only the interactive SQL
    prompt (`hitl audit sql`) keeps it, for a person waiting on a long query.
    """
    con = duckdb.connect(database, **options)
    try:
        con.execute("SET enable_progress_bar = false")
    except BaseException:
        con.close()
        raise
    return con

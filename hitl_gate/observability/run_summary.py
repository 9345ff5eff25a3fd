"""What a person reads after `hitl run`: the route shares of the days just decided.

A line from the audit database, so a new domain's owner sees at once whether the policy
sends 40 % of cases to people nobody staffs, before opening the report.
"""

from __future__ import annotations

from datetime import date

import duckdb

from hitl_gate.core.database import query_frame


def route_share_lines(
    con: duckdb.DuckDBPyConnection, domain: str, start: date, end: date
) -> list[str]:
    """The cases decided for `start..end` per route, with shares (empty when none was)."""
    routes = query_frame(
        con,
        "SELECT route, count(*) AS cases FROM decisions WHERE domain = ? "
        "AND partition_date BETWEEN ? AND ? GROUP BY route ORDER BY route",
        [domain, start, end],
    )
    total = int(routes["cases"].sum()) if routes.height else 0
    if total == 0:
        return []
    shares = ", ".join(
        f"{r['route']} {r['cases']} ({r['cases'] / total:.1%})"
        for r in routes.iter_rows(named=True)
    )
    return [f"routes of {total} cases: {shares}"]

"""Which case ids are gold (seeded for scoring, never real): the one test every stage applies.

Kept apart from `review/gold.py` (which chooses and seeds them) so that intake, the sweep and
execution can ask without importing the export. The answer comes from the sealed, insert-once
`review_gold_cases` table only, never from a batch file, so nothing a reviewer returns and no
edit of a batch can turn a gold case into a real one.
"""

from __future__ import annotations

import duckdb

# `NOT {GOLD_CASE}` keeps real cases only; format with the alias of a row having domain, case_id.
GOLD_CASE = (
    "EXISTS (SELECT 1 FROM review_gold_cases gold WHERE gold.domain = {alias}.domain "
    "AND gold.case_id = {alias}.case_id)"
)


def gold_case_ids(con: duckdb.DuckDBPyConnection, domain: str) -> set[str]:
    """Every gold case id of the domain."""
    rows = con.execute(
        "SELECT case_id FROM review_gold_cases WHERE domain = ?", [domain]
    ).fetchall()
    return {str(row[0]) for row in rows}

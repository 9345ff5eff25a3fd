"""Rows of the review tables written directly, for tests of the supervisor's figures.

The figures are read from what intake and export record; writing those rows by hand keeps the
tests small and lets each one state exactly the situation it checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import duckdb

DOMAIN = "consumer_credit"
T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
DAY = date(2026, 3, 1)


def batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    queue: str,
    cases: Sequence[str],
    assignee: str,
    *,
    due_hours: float = 48,
    created: datetime = T0,
    slot: int = 0,
    first_batch: str | None = None,
) -> None:
    """A review batch holding `cases`, assigned at creation (seq 1) to `assignee`."""
    con.execute(
        "INSERT INTO review_batches VALUES (?, ?, ?, ?, 'f', ?, ?, ?, 'm', 'r1')",
        [batch_id, DOMAIN, DAY, queue, len(cases), created,
         created + timedelta(hours=due_hours)],
    )  # fmt: skip
    for case in cases:
        if first_batch is None:
            con.execute("INSERT INTO review_batch_cases VALUES (?, ?, ?)", [batch_id, DOMAIN, case])
        else:
            con.execute(
                "INSERT INTO review_second_opinion_cases VALUES (?, ?, ?, ?)",
                [batch_id, DOMAIN, case, first_batch],
            )
    con.execute(
        "INSERT INTO review_assignments VALUES (?, 1, ?, ?, ?, ?, 'pipeline', NULL, NULL, NULL, ?)",
        [batch_id, DOMAIN, queue, assignee, slot, created],
    )


def opinion(
    con: duckdb.DuckDBPyConnection,
    case: str,
    batch_id: str,
    reviewer: str,
    verdict: str,
    *,
    hours: float,
    stage: str = "single",
    suggested: str | None = None,
) -> None:
    """`reviewer`'s opinion on `case`, received `hours` after T0."""
    con.execute(
        "INSERT INTO verdict_opinions VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, 'sha', 1, ?, "
        "NULL)",
        [DOMAIN, case, batch_id, reviewer, stage, verdict, suggested,
         suggested is not None and suggested != verdict, stage in ("first", "second"),
         T0 + timedelta(hours=hours)],
    )  # fmt: skip


def final(con: duckdb.DuckDBPyConnection, case: str, batch_id: str, verdict: str) -> None:
    """A final verdict on `case`."""
    con.execute(
        "INSERT INTO verdicts VALUES (?, ?, ?, ?, NULL, NULL, 'x', 'sha', 1, ?)",
        [DOMAIN, case, batch_id, verdict, T0],
    )

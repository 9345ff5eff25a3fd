"""Who must answer a review batch: the `review_assignments` log, read as its latest row.

Exports write seq 1 (the pipeline's choice); a supervisor's signed reassignment appends the next
seq. Intake asks `current_assignee` and accepts only that person's signature on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Assignment:
    """The current holder of a batch and which opinion it carries (0 single, 1/2 four-eyes)."""

    batch_id: str
    assignee_id: str
    queue: str
    opinion_slot: int
    seq: int


def current_assignee(con: duckdb.DuckDBPyConnection, batch_id: str) -> Assignment | None:
    """The batch's current assignment (None: the batch was never assigned)."""
    row = next(
        iter(
            con.execute(
                "SELECT batch_id, assignee_id, queue, opinion_slot, seq FROM review_assignments "
                "WHERE batch_id = ? ORDER BY seq DESC LIMIT 1",
                [batch_id],
            ).fetchall()
        ),
        None,
    )
    if row is None:
        return None
    return Assignment(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))

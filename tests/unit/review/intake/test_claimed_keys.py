"""`sealing.insert_claimed` claims exactly the keys its insert wrote (issue 18: step-owned rows).

It reads them from the insert's `RETURNING`, which equals "present after and not before" only
because each intake-owned table's primary key is its event source's key: pinned here on the
real schema, with a forged row under a key the insert also carries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.audit.events import SOURCES_BY_TYPE
from hitl_gate.core.database import audit_connection, transaction
from hitl_gate.review.intake.sealing import INTAKE_OWNED, insert_claimed
from tests.blank_audit_db import blank_if_missing

AT = datetime(2018, 3, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize("table", sorted(INTAKE_OWNED))
def test_each_intake_table_is_keyed_by_its_event_key(tmp_path: Path, table: str) -> None:
    db = blank_if_missing(tmp_path / "audit.duckdb")
    with audit_connection(db) as con:
        rows = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchall()
    source = SOURCES_BY_TYPE[INTAKE_OWNED[table]]
    assert [list(r[0]) for r in rows] == [list(source.key)]


def _verdicts(cases: list[str], rationale: str) -> pl.DataFrame:
    n = len(cases)
    return pl.DataFrame(
        {
            "domain": ["consumer_credit"] * n,
            "case_id": cases,
            "batch_id": ["b"] * n,
            "verdict": ["approve"] * n,
            "verdict_reason_code": [None] * n,
            "rationale": [rationale] * n,
            "reviewer_id": ["analyst-7"] * n,
            "file_sha256": ["f"] * n,
            "row_number": list(range(2, n + 2)),
            "received_at": [AT] * n,
        },
        schema_overrides={"verdict_reason_code": pl.String},
    )


def test_only_the_rows_the_insert_wrote_are_claimed(tmp_path: Path) -> None:
    db = blank_if_missing(tmp_path / "audit.duckdb")
    with audit_connection(db) as con:
        with transaction(con):  # a row forged earlier under a key the file also answers
            forged = insert_claimed(con, "verdicts", _verdicts(["APP-2"], "forged"))
        assert forged == ["consumer_credit/APP-2"]
        with transaction(con):
            claimed = insert_claimed(
                con, "verdicts", _verdicts(["APP-1", "APP-2", "APP-3", "APP-1"], "genuine")
            )
        assert claimed == ["consumer_credit/APP-1", "consumer_credit/APP-3"]
        kept = con.execute("SELECT case_id, rationale FROM verdicts ORDER BY 1").fetchall()
        assert kept == [("APP-1", "genuine"), ("APP-2", "forged"), ("APP-3", "genuine")]
        assert insert_claimed(con, "verdicts", _verdicts([], "none")) == []

"""The execution stage's inserts: a plain insert first, exactly `insert_new_rows`' rows, and
notices' reasons read for the declined cases alone, whichever run executed them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.database import audit_connection, insert_new_rows, query_frame
from hitl_gate.execution.execute import declined_cases, execute_days, insert_once, reason_columns
from tests.blank_audit_db import blank_if_missing
from tests.unit.execution.test_execute import DAY, DOMAIN, _routed

AT = datetime(2018, 3, 5, 12, tzinfo=UTC)


def _executions(case_ids: list[str], day: object = DAY) -> pl.DataFrame:
    n = len(case_ids)
    return pl.DataFrame(
        {
            "domain": [DOMAIN.name] * n, "case_id": case_ids, "partition_date": [day] * n,
            "action": ["approve"] * n, "decided_by": ["policy"] * n,
            "reviewer_id": pl.Series([None] * n, dtype=pl.String), "route": ["auto_approve"] * n,
            "policy_version": ["p1"] * n, "model_version": ["m1"] * n,
            "reason_codes": [["R1"]] * n, "run_id": ["run-1"] * n, "executed_at": [AT] * n,
        }
    )  # fmt: skip


def _stored(con: object) -> pl.DataFrame:
    return query_frame(con, "SELECT * FROM executions ORDER BY case_id")  # type: ignore[arg-type]


@pytest.mark.usefixtures("fresh_audit_db")
def test_new_keys_are_inserted_whole(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "audit.duckdb") as con:
        assert insert_once(con, "executions", _executions(["a", "b", "c"])) == 3
        assert insert_once(con, "executions", _executions([])) == 0
        assert _stored(con)["case_id"].to_list() == ["a", "b", "c"]


@pytest.mark.parametrize(
    "incoming",
    [
        ["a", "x", "y"],  # a key stored under another day: a case is executed once, ever
        ["x", "y", "x"],  # a key twice in one insert
    ],
)
def test_stored_keys_are_skipped_as_insert_new_rows_skips_them(
    tmp_path: Path, incoming: list[str]
) -> None:
    """The plain insert fails whole on a stored key, and the rows `insert_new_rows` keeps are
    inserted: the same table, the same count, the stored row untouched."""
    stored = _executions(["a"], day=DAY.replace(day=4))
    tables = {}
    for name, insert in (("once", insert_once), ("new_rows", insert_new_rows)):
        db = tmp_path / name / "audit.duckdb"
        db.parent.mkdir()
        blank_if_missing(db)
        with audit_connection(db) as con:
            insert_new_rows(con, "executions", stored)
            counted = insert(con, "executions", _executions(incoming))
            tables[name] = (counted, _stored(con).drop("executed_at"))
    (count, table), (expected_count, expected) = tables["once"], tables["new_rows"]
    assert count == expected_count == 2
    assert_frame_equal(table, expected)
    assert (
        table.filter(pl.col("case_id") == "a")["partition_date"].item()
        == stored["partition_date"].item()
    )


def test_reasons_are_read_for_declines_stored_or_new_only() -> None:
    to_execute = pl.DataFrame({"case_id": ["c1", "c2"], "action": ["decline", "approve"]})
    earlier = pl.DataFrame({"case_id": ["c3", "c4"], "action": ["approve", "decline"]})
    cases = declined_cases(to_execute, earlier)
    assert cases.to_list() == ["c1", "c4"]
    routed = _routed(["auto_decline"] * 5)
    verdicts = pl.DataFrame(
        {"case_id": ["c4"], "verdict": ["decline"], "verdict_reason_code": ["V1"]}
    )
    reasons = reason_columns(routed, verdicts, DOMAIN.case_id, cases)
    assert reasons.sort("case_id").rows() == [("c1", "D01", None), ("c4", "D01", "V1")]
    assert reason_columns(routed, verdicts, DOMAIN.case_id).height == 5


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_rerun_issues_an_earlier_decline_its_notice_with_its_reasons(tmp_path: Path) -> None:
    """A run stopped after its executions, before their notices: the re-run finds the decline
    already executed (`earlier`) and its notice still names the rule that declined it."""
    routed = _routed(["auto_approve", "auto_decline"]).with_columns(
        pl.Series("reason_codes", [[], []], dtype=pl.List(pl.String))
    )
    connect = partial(audit_connection, tmp_path / "audit.duckdb")
    run = partial(execute_days, DOMAIN, routed, pl.DataFrame(schema=_VERDICTS), connect,
                  tmp_path / "outbox", [DAY])  # fmt: skip
    first = run(run_id="run-1")
    with connect() as con:
        notices = query_frame(con, "SELECT case_id, reason_codes FROM adverse_actions")
        con.execute("DELETE FROM adverse_actions")
    assert notices.rows() == [("c1", ["D01"])]  # the fallback: the rule's own code
    again = run(run_id="run-2")
    assert (first.executed_now, again.executed_now, again.notices) == (2, 0, 1)
    with connect() as con:
        reissued = query_frame(con, "SELECT case_id, reason_codes FROM adverse_actions")
    assert_frame_equal(reissued, notices)


_VERDICTS = {"case_id": pl.String, "verdict": pl.String, "reviewer_id": pl.String}

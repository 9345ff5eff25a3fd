"""The day's accounting: rows read = quarantined + executed + pending review, per day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.execution.accounting import day_accounting

D1, D2, D3 = date(2018, 3, 5), date(2018, 3, 6), date(2018, 3, 7)
NOW = datetime(2018, 3, 8, tzinfo=UTC)


def _file(con, day: date, read: int, quarantined: int) -> None:  # noqa: ANN001
    con.execute(
        "INSERT INTO input_files VALUES (?, ?, ?, 'sha', 1, ?, 'accepted', NULL, ?, ?, ?, 1, "
        "'digest', 'run', ?)",
        ["dom", day, f"{day}.csv", NOW, read, read - quarantined, quarantined, NOW],
    )


def _execution(con, case_id: str, day: date) -> None:  # noqa: ANN001
    con.execute(
        "INSERT INTO executions VALUES ('dom', ?, ?, 'approve', 'policy', NULL, 'auto_approve', "
        "'p', 'm', ['R'], 'run', ?)",
        [case_id, day, NOW],
    )


@pytest.mark.usefixtures("fresh_audit_db")
def test_each_day_balances_only_when_every_case_is_accounted_for(tmp_path: Path) -> None:
    statuses = pl.DataFrame(
        {
            "partition_date": [D1, D1, D1, D2, D2],
            "status": ["executed", "pending_review", "held", "executed", "executed"],
        }
    )
    with audit_connection(tmp_path / "audit.duckdb") as con:
        _file(con, D1, read=4, quarantined=1)  # 1 quarantined + 1 executed + 2 not executed
        _file(con, D2, read=3, quarantined=0)  # 3 read, only 2 executed: unbalanced
        _execution(con, "a", D1)
        _execution(con, "b", D2)
        _execution(con, "c", D2)
        accounting = day_accounting(con, "dom", [D1, D2, D3], statuses, "run-9", NOW)
    assert accounting.select(
        "partition_date", "rows_read", "rows_quarantined", "executed", "pending_review", "balanced"
    ).rows() == [
        (D1, 4, 1, 1, 2, True),
        (D2, 3, 0, 2, 0, False),
        (D3, 0, 0, 0, 0, True),  # a day without files is empty, and balanced
    ]
    assert set(accounting["run_id"]) == {"run-9"} and set(accounting["domain"]) == {"dom"}


def test_the_run_seal_goes_through_its_segment_when_switched_on(tmp_path: Path) -> None:
    """`account_days` with segments (HITL_AUDIT_SEGMENTS=on): the accounting and the day's
    input file are sealed in the run's segment, folded under a global checkpoint; the replica
    is refreshed after the fold; the single chain gets nothing versioned."""
    from hitl_gate.audit.keys import load_or_create_signing_key
    from hitl_gate.audit.run_segments import Segments
    from hitl_gate.audit.witness import WitnessConfig
    from hitl_gate.core.domain import load_domain
    from hitl_gate.execution.accounting import account_days

    db = tmp_path / "home" / "audit.duckdb"
    with audit_connection(db) as con:
        _file(con, D1, read=1, quarantined=1)
    segments = Segments(tmp_path / "home" / "audit" / "segments")
    domain = load_domain("consumer_credit")
    with audit_connection(db) as con:  # the domain of the file above is the run's
        con.execute("UPDATE input_files SET domain = ?", [domain.name])
    closed = account_days(
        domain,
        pl.DataFrame({"partition_date": [D1], "status": ["held"]}),
        partial(audit_connection, db),
        tmp_path / "outcomes",
        [D1],
        run_id="run-1",
        signing_key=load_or_create_signing_key(tmp_path / "keys" / "k"),
        checkpoints=tmp_path / "home" / "checkpoints",
        seal_memory_limit=None,
        witness=WitnessConfig(tmp_path / "witness"),
        replica=tmp_path / "home" / "replica",
        segments=segments,
    )
    assert closed.sealed.appended == 2  # the input file and the day's accounting
    with audit_connection(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM audit_log").fetchall() == [(0,)]
        leaves = con.execute("SELECT segment_id FROM audit_segment_leaves").fetchall()
    assert leaves == [(f"{domain.name}.{D1}_{D1}.run-1",)]
    assert (tmp_path / "witness" / "global_checkpoints.jsonl").exists()
    assert (tmp_path / "home" / "replica" / "current").exists()

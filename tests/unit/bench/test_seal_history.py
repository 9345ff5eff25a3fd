"""`bench.seal_history` measures exactly the seal's and refresh's checks that read every day."""

from __future__ import annotations

from pathlib import Path

import duckdb

from bench.seal_history import history_costs
from hitl_gate.audit.replica import lineage_tables
from hitl_gate.core.database import audit_connection
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.tamper_home import DOMAIN, add_rows


def test_the_whole_table_sweeps_and_the_stamps_are_measured_on_every_row(tmp_path: Path) -> None:
    """Insert-once tables and versioned ones without a day are swept whole (so each is
    measured, on all its rows); a day-partitioned table's pick reads its run's days only (not
    listed); the stamps read every lineage row; the database is only read."""
    db = blank_if_missing(tmp_path / "audit.duckdb")
    with audit_connection(db) as con:
        for day, first in (("2018-03-18", 0), ("2018-03-19", 3)):
            cases = range(first, first + 3)
            add_rows(con, "decisions", [(n, {"domain": DOMAIN, "case_id": f"C{n}",
                                             "partition_date": day}) for n in cases])  # fmt: skip
            add_rows(con, "executions", [(n, {"domain": DOMAIN, "case_id": f"C{n}",
                                              "partition_date": day}) for n in cases])  # fmt: skip
        add_rows(con, "outcomes", [(n, {"domain": DOMAIN, "case_id": f"C{n}"}) for n in range(5)])
    before = db.stat().st_mtime_ns, db.read_bytes()
    with duckdb.connect(str(db), read_only=True) as con:
        costs = history_costs(con)
        lineage = sum(
            con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
            for table in lineage_tables(con)
        )
    assert costs["unseen execution"].rows == 6
    assert costs["unseen outcome_recorded"].rows == 5
    assert "unseen decision" not in costs  # the pick reads the run's days of it, not the history
    assert costs["stamps"].rows == lineage == 6 + 6 + 5
    assert all(cost.cpu_s >= 0 for cost in costs.values())
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before

"""`verify`'s lineage findings as a whole: every kind, per table in source order, with counts.

The tamper corpus checks that each insider action is named; this pins the full list one
verification gives when several tables are tampered with at once (examples per table and kind,
then how many more), so checking many tables in one query cannot reorder, merge or drop any.
"""

from __future__ import annotations

import re
from pathlib import Path

from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection
from tests.unit.audit.tamper_home import DOMAIN, add_row, tamper_home_at

CASES = ", ".join(f"'C{i}'" for i in range(1, 7))
CHANGED = "content matches no logged version (latest: entry seq"
AFTER = "edited after sealing, or written after the last seal"
EXPECTED = [
    f"decisions demo/C1: {CHANGED} 2, digest <digest>; row <digest>): {AFTER}",
    f"decisions demo/C2: {CHANGED} 3, digest <digest>; row <digest>): {AFTER}",
    f"decisions demo/C3: {CHANGED} 4, digest <digest>; row <digest>): {AFTER}",
    f"decisions demo/C4: {CHANGED} 5, digest <digest>; row <digest>): {AFTER}",
    f"decisions demo/C5: {CHANGED} 6, digest <digest>; row <digest>): {AFTER}",
    "decisions: 2 more rows differ from the audit log",
    "verdict_opinions demo/C5/rev-x: not in the audit log (written after the last seal, or "
    "inserted outside the pipeline); row digest <digest>",
    "verdicts demo/C3: insert-once record changed after it was sealed: entry seq 14 logged "
    "digest <digest>, the row now hashes to <digest> (tampering: restore the logged content)",
    *(f"executions demo/C{i}: insert-once record logged with 2 different contents (entries "
      f"seq {24 + i}, {39 + i}): edited after sealing, then sealed again" for i in range(1, 6)),
    "executions: 1 more insert-once keys logged with several contents",
    *(f"executions demo/C{i}: insert-once record logged at entry seq {27 + i} was deleted from "
      "its table" for i in range(7, 12)),
    "executions: 1 more logged insert-once records were deleted",
]  # fmt: skip


def test_one_verification_lists_every_finding_in_order(tmp_path: Path) -> None:
    home = tamper_home_at(tmp_path / "t")
    with audit_connection(home.db) as con:
        # Six executions edited and laundered by a seal that no longer knows them...
        con.execute(f"UPDATE executions SET action = 'escalate' WHERE case_id IN ({CASES})")
        con.execute("DELETE FROM audit_log_index WHERE event_type = 'execution'")
        con.execute("DELETE FROM audit_seen_rows WHERE event_type = 'execution'")
        assert (
            seal_run(con, "launder", home.key(), home.checkpoints).appended == 12
        )  # all re-logged
        # ... then six deleted, a verdict edited, every decision edited, a decision and an opinion
        # added.
        con.execute(f"DELETE FROM executions WHERE case_id NOT IN ({CASES})")
        con.execute("UPDATE verdicts SET verdict = 'decline' WHERE case_id = 'C3'")
        con.execute("UPDATE decisions SET route = 'auto_approve'")
        add_row(con, "decisions", 7, domain=DOMAIN, case_id="C7")
        add_row(con, "verdict_opinions", 9, domain=DOMAIN, case_id="C5", reviewer_id="rev-x")
        report = verify_audit(con, home.checkpoints, public_key_hex(home.key()))
    assert all(p.seq is None for p in report.problems), report.summary()
    found = [re.sub(r"\b[0-9a-f]{16}\b", "<digest>", p.message) for p in report.problems]
    assert found == EXPECTED

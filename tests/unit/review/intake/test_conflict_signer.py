"""A conflict resolution keeps who signed it: the verified signer, not the typed reviewer id."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from hitl_gate.core.database import schema_statements
from hitl_gate.identity.registry import Signer
from hitl_gate.review.intake.conflicts import record_resolutions

ROW = {
    "escalation_id": "esc-1", "case_id": "c1", "batch_id": "b1", "reviewer_id": "typed-name",
    "verdict": "decline", "verdict_reason_code": "D1", "rationale": "checked", "prior_verdict":
    "approve", "executed_action": "approve", "outcome": "reversal_requested", "file_sha256": "ab",
    "row_number": 2,
}  # fmt: skip


def test_the_signer_replaces_the_typed_id_and_is_kept_with_the_signature() -> None:
    con = duckdb.connect()
    con.execute(schema_statements())
    signer = Signer(person_id="demo-senior-underwriter-1", fingerprint="SHA256:abc")
    record_resolutions(
        con, "d", [ROW], datetime.now(UTC), signer=signer, file_signature="-----BEGIN SSH..."
    )
    assert con.execute(
        "SELECT reviewer_id, signer_fingerprint, file_signature FROM conflict_resolutions"
    ).fetchall() == [("demo-senior-underwriter-1", "SHA256:abc", "-----BEGIN SSH...")]
    assert con.execute("SELECT requested_by FROM reversal_requests").fetchall() == [
        ("demo-senior-underwriter-1",)
    ]

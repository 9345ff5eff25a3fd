"""Recording the escalation role's resolution of a conflict on a final case.

`finality.decide` says which rows resolve a conflict and how (upheld, changed, reversal
requested); this module writes that down, inside intake's transaction. A decision is executed
once and never twice, so a resolution that disagrees with an action already executed is not
executed: it is recorded as a reversal request (`reversal_requests`, chained into the audit log
and copied to the outbox by `final_decisions`) for downstream systems to act on. A resolution
before execution decides the final verdict through the `effective_verdicts` view.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame
from hitl_gate.identity.registry import Signer

REVERSAL = "reversal_requested"

_RESOLUTION_COLUMNS = (
    "escalation_id", "case_id", "batch_id", "reviewer_id", "verdict", "verdict_reason_code",
    "rationale", "prior_verdict", "executed_action", "outcome", "file_sha256", "row_number",
)  # fmt: skip


def record_resolutions(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    resolutions: Sequence[dict[str, Any]],
    now: datetime,
    *,
    signer: Signer | None = None,
    file_signature: str | None = None,
) -> None:
    """Insert the resolutions and, for those after a differing execution, reversal requests.

    A resolution is a signed act: it arrives in a verdict file whose detached signature intake
    verified (`signer`, the registered person and key; `file_signature`, the armored SSH
    signature over the file's exact bytes, whose SHA-256 is `file_sha256`). Each row keeps both,
    and its `reviewer_id` is the signer's registry id, never the id typed into the file."""
    if not resolutions:
        return
    rows = [{name: row.get(name) for name in _RESOLUTION_COLUMNS} for row in resolutions]
    if signer is not None:
        rows = [{**row, "reviewer_id": signer.person_id} for row in rows]
    frame = pl.DataFrame(
        rows,
        schema={
            name: pl.Int64 if name == "row_number" else pl.String for name in _RESOLUTION_COLUMNS
        },
    ).with_columns(
        pl.lit(domain).alias("domain"),
        pl.lit(now).alias("resolved_at"),
        pl.lit(None if signer is None else signer.fingerprint, pl.String).alias(
            "signer_fingerprint"
        ),
        pl.lit(file_signature, pl.String).alias("file_signature"),
    )
    insert_new_rows(con, "conflict_resolutions", frame)
    reversals = frame.filter(pl.col("outcome") == REVERSAL).select(
        "domain",
        "case_id",
        "escalation_id",
        "executed_action",
        pl.col("verdict").alias("requested_action"),
        pl.col("reviewer_id").alias("requested_by"),
        pl.col("verdict_reason_code").alias("reason_code"),
        "rationale",
        pl.col("resolved_at").alias("requested_at"),
    )
    insert_new_rows(con, "reversal_requests", reversals)


def reversal_requests(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """Every reversal request of a domain with the execution it asks to reverse (for the outbox)."""
    return query_frame(
        con,
        "SELECT r.*, e.partition_date, e.executed_at, e.run_id AS executed_run_id "
        "FROM reversal_requests r LEFT JOIN executions e "
        "ON e.domain = r.domain AND e.case_id = r.case_id WHERE r.domain = ? ORDER BY r.case_id",
        [domain],
    )

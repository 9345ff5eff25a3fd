"""Who returned a verdict file: its detached SSH signature, the registry and the assignment.

A verdict file is answered by whoever signed it, never by the `reviewer_id` typed into it. The
signature is `<file>.sig` beside the file (`ssh-keygen -Y sign -n hitl-gate-verdicts`, or
`hitl review sign`), over the file's exact bytes; it is checked by OpenSSH
(`identity.acts.verify_act`) against the people registry at the moment the file arrives, so an
unregistered, expired or revoked key is refused. Then only the batch's current assignee
(`review.assignments.current_assignee`) may have signed it.

Refusals here are *identity* refusals: nothing of the file is taken in, and the refusal is kept
in `verdict_rejections` (column `signature`, value the signature text) rather than in
`verdict_files`, so the same bytes correctly signed later are still accepted once, while the same
file and signature submitted again are reported as a replay of that refusal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import Registry, Signer
from hitl_gate.identity.signatures import VERDICTS, signature_path
from hitl_gate.review.assignments import current_assignee
from hitl_gate.review.intake.authority import ReviewAuthority
from hitl_gate.review.intake.limits import MAX_SIGNATURE_BYTES

SIGNATURE_COLUMN = "signature"  # `column_name` of an identity refusal in verdict_rejections
# The act the portal signs for a verdict it takes in (`app/portal/verdicts.attest`), with its
# own key (role `assignments.PORTAL_SIGNER`); `recovery` checks it again.
PORTAL_VERDICT_ACT = "portal_verdict"


def first_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object]
) -> tuple[Any, ...] | None:
    """The first row of a query, fetched fully (DuckDB refuses new work on a half-read result)."""
    rows = con.execute(sql, params).fetchall()
    return tuple(rows[0]) if rows else None


@dataclass(frozen=True)
class SignedReturn:
    """A verified signature: its signer (person and key), the text and its digest."""

    signer: Signer
    signature: str
    signature_sha256: str


def read_signature(path: Path) -> str | None:
    """The text of `<path>.sig` (None when there is none); an oversized one is cut, and fails."""
    sig = signature_path(path)
    if not sig.is_file():
        return None
    with sig.open("rb") as handle:
        raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    return raw[:MAX_SIGNATURE_BYTES].decode("ascii", "replace")


def signature_digest(signature: str | None) -> str:
    """SHA-256 of a signature's text ('' for no signature)."""
    return hashlib.sha256(signature.encode("ascii", "replace")).hexdigest() if signature else ""


def verify_return(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    data: bytes,
    signature: str | None,
    *,
    file_name: str,
    file_sha256: str,
    at: datetime,
) -> SignedReturn:
    """The registered signer of a returned file's bytes, or `IdentityError` saying what is wrong."""
    if not signature or not signature.strip():
        raise IdentityError(
            f"{file_name}: not signed (no {file_name}.sig beside it); sign it with "
            f"`hitl review sign {file_name}` (ssh-keygen -Y sign -n {VERDICTS})"
        )
    digest = signature_digest(signature)
    used = first_row(
        con,
        "SELECT file_name FROM verdict_files WHERE signature_sha256 = ? AND file_sha256 <> ?",
        [digest, file_sha256],
    )
    if used is not None:
        raise IdentityError(
            f"{file_name}: replayed signature: it was already used to return '{used[0]}'"
        )
    signer = verify_act(registry, data, signature, VERDICTS, at=at, what=file_name)
    return SignedReturn(signer=signer, signature=signature, signature_sha256=digest)


def require_assignee(
    con: duckdb.DuckDBPyConnection,
    signed: SignedReturn,
    authority: ReviewAuthority,
    *,
    file_name: str,
    batch_id: str,
) -> str:
    """Refuse unless the signer is the batch's current assignee and still holds its queue's
    role; returns the queue."""
    assignment = current_assignee(con, batch_id)
    who = f"{signed.signer.person_id} ({signed.signer.fingerprint})"
    if assignment is None:
        raise IdentityError(
            f"{file_name}: batch '{batch_id}' is assigned to nobody; no signature is accepted "
            "for it (was its export completed?)"
        )
    if assignment.assignee_id != signed.signer.person_id:
        raise IdentityError(
            f"{file_name}: signed by {who}, but batch '{batch_id}' is assigned to "
            f"{assignment.assignee_id}; only the assignee's signature is accepted"
        )
    problem = authority.may_work(signed.signer.person_id, assignment.queue, None)
    if problem is not None:
        raise IdentityError(f"{file_name}: signed by {who}: {problem}")
    return assignment.queue


def earlier_refusal(
    con: duckdb.DuckDBPyConnection, file_sha256: str, signature: str | None
) -> str | None:
    """The identity refusal already recorded for these exact bytes and signature, if any."""
    row = first_row(
        con,
        "SELECT message FROM verdict_rejections WHERE file_sha256 = ? AND column_name = ? "
        "AND coalesce(value, '') = ? LIMIT 1",
        [file_sha256, SIGNATURE_COLUMN, signature or ""],
    )
    return None if row is None else str(row[0])


def identity_refused(con: duckdb.DuckDBPyConnection, hashes: list[str]) -> set[str]:
    """Which of `hashes` were refused for their signature (kept out of `verdict_files`)."""
    rows = con.execute(
        "SELECT DISTINCT file_sha256 FROM verdict_rejections WHERE column_name = ? "
        "AND file_sha256 IN (SELECT unnest(?::VARCHAR[]))",
        [SIGNATURE_COLUMN, hashes],
    ).fetchall()
    return {str(row[0]) for row in rows}


def record_refusal(
    con: duckdb.DuckDBPyConnection, file_sha256: str, signature: str | None, message: str
) -> None:
    """Keep an identity refusal (once per file and signature)."""
    if earlier_refusal(con, file_sha256, signature) is None:
        con.execute(
            "INSERT INTO verdict_rejections (file_sha256, row_number, case_id, column_name, "
            "value, message) VALUES (?, NULL, NULL, ?, ?, ?)",
            [file_sha256, SIGNATURE_COLUMN, signature or "", message],
        )

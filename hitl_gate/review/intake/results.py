"""What intake says about a returned file: one true sentence, and whether anything was refused.

The same words serve the Dagster logs, `hitl review ingest` and its exit status: a four-eyes
first opinion is recorded and awaiting the second reviewer (not "0 accepted"); a file refused
before and submitted again unchanged is a replay of that refusal; an identity refusal says the
file was not taken in at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb

from hitl_gate.review.intake.signed import SIGNATURE_COLUMN, earlier_refusal, first_row


@dataclass(frozen=True)
class IntakeOutcome:
    """What happened to one returned file, in the words intake reports it with.

    `identity_refused`: the signature (or the signer's authority) was refused, nothing was taken
    in. `replay_of`: this exact file was refused before (its earlier reason), or was already
    taken in (`duplicate`). `pending_second`: four-eyes first opinions recorded, awaiting the
    second reviewer; they are neither accepted nor refused.
    """

    file_name: str
    file_sha256: str
    batch_id: str | None
    accepted: int
    rejected: int
    duplicate: bool
    error: str | None
    messages: tuple[str, ...]
    pending_second: int = 0  # four-eyes cases waiting for a second reviewer
    escalated: int = 0
    conflicts_resolved: int = 0
    signer_id: str | None = None
    signer_fingerprint: str | None = None
    identity_refused: bool = False
    replay_of: str | None = None
    # Opinion and verdict keys this intake inserted, per event type: what its seal may log.
    written: Mapping[str, tuple[str, ...] | list[str]] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """True when anything in the file was refused (the CLI then exits non-zero)."""
        return bool(self.error or self.rejected or self.identity_refused or self.replay_of)

    def summary(self) -> str:
        """One true sentence about the file (four-eyes first opinions and replays included)."""
        name = self.file_name
        if self.replay_of is not None:
            return f"{name}: refused again, this exact file was refused before: {self.replay_of}"
        if self.duplicate:
            return f"{name}: already taken in (same content); nothing new was recorded"
        if self.identity_refused or (self.error and not self.accepted):
            return f"{name}: refused, nothing taken in: {self.error}"
        who = f", signed by {self.signer_id} ({self.signer_fingerprint})" if self.signer_id else ""
        parts = [f"{self.accepted} verdict(s) accepted"]
        if self.pending_second:
            parts.append(
                f"{self.pending_second} four-eyes first opinion(s) recorded, awaiting the "
                "second reviewer"
            )
        if self.escalated:
            parts.append(f"{self.escalated} escalated")
        if self.conflicts_resolved:
            parts.append(f"{self.conflicts_resolved} conflict(s) resolved")
        parts.append(f"{self.rejected} row(s) refused")
        return f"{name}: batch {self.batch_id}{who}: " + ", ".join(parts)


def earlier_outcome(
    con: duckdb.DuckDBPyConnection, name: str, sha: str, signature: str | None
) -> IntakeOutcome | None:
    """A file seen before: already taken in, or refused before (for its content or for these
    exact bytes and signature): reported as such, nothing recorded again."""
    row = first_row(
        con,
        "SELECT batch_id, rows_rejected, error FROM verdict_files WHERE file_sha256 = ?",
        [sha],
    )
    if row is not None:
        batch_id, rows_rejected, error = row
        replay = error or (f"{rows_rejected} row(s) were refused" if rows_rejected else None)
        return IntakeOutcome(name, sha, batch_id, 0, 0, True, None, (), replay_of=replay)
    refusal = earlier_refusal(con, sha, signature)
    if refusal is not None:
        return IntakeOutcome(
            name, sha, None, 0, 0, True, refusal, (refusal,), identity_refused=True,
            replay_of=refusal,
        )  # fmt: skip
    return None


def recorded_outcome(
    con: duckdb.DuckDBPyConnection, name: str, sha: str, signature: str | None
) -> IntakeOutcome | None:
    """What the audit database holds about a file taken in (or refused for its signature):
    read back after a run, for the CLI's report (None: nothing recorded)."""
    row = first_row(
        con,
        "SELECT batch_id, rows_accepted, rows_rejected, error, signer_id, signer_fingerprint "
        "FROM verdict_files WHERE file_sha256 = ?",
        [sha],
    )
    if row is None:
        refusal = earlier_refusal(con, sha, signature)
        if refusal is None:
            return None
        return IntakeOutcome(
            name, sha, None, 0, 0, False, refusal, (refusal,), identity_refused=True
        )  # fmt: skip
    batch_id, accepted, rejected, error, signer, fingerprint = row
    pending = first_row(
        con,
        "SELECT count(*) FROM verdict_opinions WHERE file_sha256 = ? AND stage = 'first'",
        [sha],
    )
    messages = tuple(
        str(m)
        for (m,) in con.execute(
            "SELECT message FROM verdict_rejections WHERE file_sha256 = ? AND "
            "column_name IS DISTINCT FROM ? ORDER BY row_number NULLS LAST",
            [sha, SIGNATURE_COLUMN],
        ).fetchall()
    )
    return IntakeOutcome(
        name,
        sha,
        batch_id,
        int(accepted),
        int(rejected),
        False,
        error,
        messages,
        pending_second=int(pending[0]) if pending else 0,
        signer_id=signer,
        signer_fingerprint=fingerprint,
    )

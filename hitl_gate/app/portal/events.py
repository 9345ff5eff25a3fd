"""The portal's audit events (`portal_events`, sealed): sign-ins, failures, lockouts, sign-outs.

Lockout is read from these same rows, so it survives a restart and is exactly what the audit
log shows: a person is locked once `lockout_failures` failed attempts follow their last good
sign-in, for `lockout_minutes` from the last of them. Sessions and clients are logged as
digests, never as tokens or addresses.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import duckdb

SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
LOCKED_OUT = "locked_out"
SIGN_OUT = "sign_out"
REFUSED = "refused"
VERDICT = "verdict"
UPLOAD = "upload"
DOWNLOAD = "download"


def digest(text: str) -> str:
    """A short, non-reversible reference to a session token or client address."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record_event(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    at: datetime,
    *,
    person_id: str | None = None,
    auth_method: str | None = None,
    session: str | None = None,
    client: str | None = None,
    detail: str = "",
) -> None:
    """Append one event (insert-once; sealed with the other audit tables)."""
    con.execute(
        "INSERT INTO portal_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            secrets.token_hex(16),
            at,
            kind,
            person_id,
            auth_method,
            digest(session) if session else None,
            digest(client) if client else None,
            detail,
        ],
    )


def locked_until(
    con: duckdb.DuckDBPyConnection, person_id: str, failures: int, minutes: int, now: datetime
) -> datetime | None:
    """When `person_id`'s lockout ends, if they are locked out at `now` (else None)."""
    rows = con.execute(
        "SELECT kind, occurred_at FROM portal_events WHERE person_id = ? AND kind IN (?, ?, ?) "
        "ORDER BY occurred_at DESC LIMIT ?",
        [person_id, SIGN_IN, SIGN_IN_FAILED, LOCKED_OUT, failures + 1],
    ).fetchall()
    window = timedelta(minutes=minutes)
    for kind, at in rows:
        if kind == SIGN_IN:
            return None
        if kind == LOCKED_OUT:
            return at + window if now < at + window else None
    return None


def failures_since_success(con: duckdb.DuckDBPyConnection, person_id: str, limit: int) -> int:
    """Failed attempts after the person's last good sign-in or lockout (at most `limit`)."""
    rows = con.execute(
        "SELECT kind FROM portal_events WHERE person_id = ? AND kind IN (?, ?, ?) "
        "ORDER BY occurred_at DESC LIMIT ?",
        [person_id, SIGN_IN, SIGN_IN_FAILED, LOCKED_OUT, limit],
    ).fetchall()
    count = 0
    for (kind,) in rows:
        if kind != SIGN_IN_FAILED:
            break
        count += 1
    return count

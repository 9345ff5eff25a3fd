"""Server-side sessions, CSRF tokens and the sign-in rate limit (in memory, per process).

The cookie carries only a random token; the session (person, sign-in method, CSRF token,
times) stays in the process, so a restart signs everyone out, which is the safe direction.
Signing in issues a new token (no session fixation); every form carries the session's CSRF
token and every POST is refused without it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

COOKIE = "hitl_portal"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    """One browser's session: anonymous (only a CSRF token) until signed in."""

    token: str
    csrf: str
    created_at: datetime
    seen_at: datetime
    person_id: str | None = None
    auth_method: str | None = None
    signer_fingerprint: str | None = None  # the key that binds the person's credential
    # Authlib's state and nonce during an OIDC sign-in (its `request.session`).
    oidc: dict[str, object] = field(default_factory=dict, compare=False)

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, str(submitted))


@dataclass
class SessionStore:
    """Sessions by token, expiring after `lifetime` or `idle` without a request."""

    lifetime: timedelta
    idle: timedelta
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, now: datetime) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None, now: datetime) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.created_at > self.lifetime or now - session.seen_at > self.idle:
                del self._sessions[token]
                return None
            session = replace(session, seen_at=now)
            self._sessions[token] = session
            return session

    def sign_in(
        self,
        old: Session | None,
        person_id: str,
        method: str,
        fingerprint: str | None,
        now: datetime,
    ) -> Session:
        """A fresh session (new token and CSRF token) for the person; the old one ends."""
        self.end(old)
        session = replace(
            self.new(now), person_id=person_id, auth_method=method, signer_fingerprint=fingerprint
        )
        with self._lock:
            self._sessions[session.token] = session
        return session

    def update(self, session: Session) -> None:
        with self._lock:
            if session.token in self._sessions:
                self._sessions[session.token] = session

    def end(self, session: Session | None) -> None:
        if session is not None:
            with self._lock:
                self._sessions.pop(session.token, None)


@dataclass
class RateLimit:
    """At most `per_minute` attempts per client in any 60 seconds (sliding window)."""

    per_minute: int
    _seen: dict[str, deque[datetime]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str, now: datetime) -> bool:
        with self._lock:
            times = self._seen.setdefault(client, deque())
            while times and now - times[0] > timedelta(minutes=1):
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True

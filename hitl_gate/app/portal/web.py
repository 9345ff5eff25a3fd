"""The portal's shared plumbing: its configuration, the signed-in principal, CSRF, rendering,
database access and the refusals every route uses (see the package docstring)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import duckdb
from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from hitl_gate.app.portal import events
from hitl_gate.app.portal.casepage import RuleTexts
from hitl_gate.app.portal.contributions import ContributionSource
from hitl_gate.app.portal.sessions import (
    COOKIE,
    CSRF_FIELD,
    RateLimit,
    Session,
    SessionStore,
    TotpSteps,
)
from hitl_gate.app.portal.settings import PortalSettings
from hitl_gate.app.portal.verdicts import IntakePlace
from hitl_gate.core.database import audit_connection
from hitl_gate.core.db_lock import LockHolder, is_lock_error, lock_holder
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.registry import Person, Registry
from hitl_gate.identity.store import load_registry

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PortalConfig:
    """Everything the portal needs, chosen once by `hitl portal serve` (or a test)."""

    audit_db: Path
    secrets_dir: Path
    place: IntakePlace
    domains: Mapping[str, DomainConfig]
    settings: PortalSettings = field(default_factory=PortalSettings)
    clock: Callable[[], datetime] = utc_now
    # The model's per-input terms on case pages (None: the page says they are not available).
    contributions: ContributionSource | None = None


class NotSignedIn(Exception):
    """No signed-in session: pages redirect to sign-in, form posts are refused (403)."""


class Forbidden(Exception):
    """Signed in, but not allowed this (another person's case, a role not held, no CSRF)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AuditDatabaseBusy(Exception):
    """Another process (a run, an auditor's session) holds the audit file: the page says who,
    with 503, and the person tries again (a run holds it for seconds at a time)."""

    def __init__(self, holder: LockHolder | None) -> None:
        self.holder = holder
        by = f"process {holder.pid}" if holder else "another process"
        self.reason = f"the audit database is busy (held by {by}); try again"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Principal:
    """The signed-in person of a request."""

    person: Person
    session: Session
    registry: Registry

    @property
    def person_id(self) -> str:
        return self.person.person_id

    def holds(self, domain: str, role: str) -> bool:
        return self.person.holds(domain, role)


@dataclass
class Portal:
    """The running portal: configuration, sessions, rate limit, templates, database lock."""

    config: PortalConfig
    sessions: SessionStore
    rate_limit: RateLimit
    templates: Jinja2Templates
    db_lock: threading.Lock = field(default_factory=threading.Lock)
    rule_texts: RuleTexts = field(default_factory=RuleTexts)
    totp_steps: TotpSteps = field(default_factory=TotpSteps)

    @classmethod
    def create(cls, config: PortalConfig) -> Portal:
        settings = config.settings
        return cls(
            config=config,
            sessions=SessionStore(
                lifetime=timedelta(minutes=settings.session_minutes),
                idle=timedelta(minutes=settings.idle_minutes),
            ),
            rate_limit=RateLimit(settings.sign_in_per_minute),
            templates=Jinja2Templates(
                env=Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)
            ),
        )

    def now(self) -> datetime:
        return self.config.clock().astimezone(UTC)

    @contextmanager
    def db(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived audit connection (one at a time: DuckDB has one writer per file, and
        the pipeline must get its turn between requests). Raises `AuditDatabaseBusy` when
        another process holds the file."""
        with self.db_lock, ExitStack() as stack:
            try:
                con = stack.enter_context(
                    audit_connection(self.config.audit_db, read_only=not write)
                )
            except duckdb.IOException as error:
                if not is_lock_error(error):
                    raise
                raise AuditDatabaseBusy(lock_holder(error)) from None
            yield con


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def session_of(request: Request) -> Session | None:
    portal = portal_of(request)
    return portal.sessions.get(request.cookies.get(COOKIE), portal.now())


def principal_of(
    request: Request, con: duckdb.DuckDBPyConnection, roles: Sequence[tuple[str, str]] = ()
) -> Principal | str:
    """The request's signed-in, active person holding one of `roles` (none: any), read on the
    caller's connection; else why not (a reason to `refuse` with). Raises `NotSignedIn`."""
    portal = portal_of(request)
    session = session_of(request)
    if session is None or session.person_id is None:
        raise NotSignedIn
    registry = load_registry(con)
    person = registry.people.get(session.person_id)
    if person is None or not person.is_active(portal.now()):
        portal.sessions.end(session)
        raise NotSignedIn
    if roles and not any(person.holds(domain, role) for domain, role in roles):
        wanted = " or ".join(f"{d}:{r}" for d, r in roles)
        return f"{request.url.path}: needs {wanted}"
    return Principal(person=person, session=session, registry=registry)


def require_person(request: Request, roles: Sequence[tuple[str, str]] = ()) -> Principal:
    """The signed-in, still active person of the request, holding one of `roles`
    ((domain, role) pairs; none given: any active person). Raises `NotSignedIn` or
    `Forbidden` (the refusal is logged)."""
    with portal_of(request).db() as con:
        found = principal_of(request, con, roles)
    if isinstance(found, str):
        refuse(request, session_of(request), found)
    return found


def refuse(request: Request, session: Session | None, reason: str, status: int = 403) -> NoReturn:
    """Log the refusal (`portal_events`, kind `refused`) and raise `Forbidden`."""
    portal = portal_of(request)
    with portal.db(write=True) as con:
        events.record_event(
            con,
            events.REFUSED,
            portal.now(),
            person_id=session.person_id if session else None,
            auth_method=session.auth_method if session else None,
            session=session.token if session else None,
            client=client_of(request),
            detail=reason,
        )
    raise Forbidden(reason, status)


async def checked_form(request: Request, session: Session | None) -> Mapping[str, Any]:
    """The posted form, after its CSRF token matched the session's (else refused)."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    if session is None or not session.csrf_ok(submitted if isinstance(submitted, str) else None):
        refuse(request, session, f"{request.url.path}: CSRF token missing or wrong")
    return form


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> Response:
    """Render `template` (extending `base.html`) with the session's CSRF token and person."""
    session = session_of(request)
    values = {"csrf": session.csrf if session else "", "session": session, **(context or {})}
    return portal_of(request).templates.TemplateResponse(
        request, template, values, status_code=status
    )


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure unless bound to localhost."""
    settings = portal_of(request).config.settings
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=settings.session_minutes * 60,
        httponly=True,
        samesite="strict",
        secure=not settings.local,
        path="/",
    )

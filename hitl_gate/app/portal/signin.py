"""Sign-in with a password and a TOTP code, sign-out, and the lockout and rate limit around them.

Every attempt is logged in `portal_events`: a good sign-in, each failure (with why, for the
audit; the person is only told it failed), the lockout once `lockout_failures` failures follow
in a row, and sign-out. A locked person is refused even with the right password until the
lockout ends; a client over the rate limit is refused before anything is checked.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hitl_gate.app.portal import events
from hitl_gate.app.portal.credentials import CredentialError, load_credential, verified_binding
from hitl_gate.app.portal.web import (
    Portal,
    checked_form,
    client_of,
    portal_of,
    render,
    session_of,
    set_session_cookie,
)
from hitl_gate.identity.registry import PERSON_ID
from hitl_gate.identity.store import load_registry

PASSWORD_TOTP = "password+totp"
FAILED = "Sign-in failed: check your person id, password and code."


async def sign_in_page(request: Request) -> Response:
    portal = portal_of(request)
    session = session_of(request) or portal.sessions.new(portal.now())
    oidc = portal.config.settings.oidc is not None
    response = render(request, "sign_in.html", {"csrf": session.csrf, "oidc": oidc})
    set_session_cookie(request, response, session)
    return response


def _fail(
    con: duckdb.DuckDBPyConnection,
    portal: Portal,
    person_id: str,
    client: str,
    why: str,
    now: datetime,
) -> None:
    """Log a failure, and the lockout when it is the N-th in a row."""
    events.record_event(con, events.SIGN_IN_FAILED, now, person_id=person_id,
                        auth_method=PASSWORD_TOTP, client=client, detail=why)  # fmt: skip
    settings = portal.config.settings
    if events.failures_since_success(con, person_id, settings.lockout_failures) >= (
        settings.lockout_failures
    ):
        events.record_event(
            con, events.LOCKED_OUT, now, person_id=person_id, auth_method=PASSWORD_TOTP,
            client=client, detail=f"{settings.lockout_failures} failed sign-ins in a row",
        )  # fmt: skip


def _check(
    con: duckdb.DuckDBPyConnection,
    portal: Portal,
    person_id: str,
    password: str,
    code: str,
    now: datetime,
) -> tuple[str | None, str]:
    """(the binding key's fingerprint, "") on success, else (None, why it failed)."""
    settings = portal.config.settings
    until = events.locked_until(
        con, person_id, settings.lockout_failures, settings.lockout_minutes, now
    )
    if until is not None:
        return None, f"locked out until {until.isoformat()}"
    try:
        credential = load_credential(portal.config.secrets_dir, person_id)
        if credential is None:
            return None, "no portal credential enrolled"
        registry = load_registry(con)
        person = registry.people.get(person_id)
        if person is None or not person.is_active(now):
            return None, "not an active person of the registry"
        signer = verified_binding(con, registry, credential, now)
    except CredentialError as error:
        return None, str(error)
    if not credential.password_ok(password):
        return None, "wrong password"
    if not credential.totp_ok(code, now):
        return None, "wrong or expired TOTP code"
    return signer.fingerprint, ""


async def sign_in(request: Request) -> Response:
    portal = portal_of(request)
    now, client = portal.now(), client_of(request)
    session = session_of(request)
    form = await checked_form(request, session)
    if not portal.rate_limit.allow(client, now):
        return render(request, "sign_in.html", {"message": "Too many attempts; wait a minute."},
                      status=429)  # fmt: skip
    person_id = str(form.get("person_id", "")).strip()
    password, code = str(form.get("password", "")), str(form.get("totp", ""))
    if PERSON_ID.fullmatch(person_id) is None:
        return render(request, "sign_in.html", {"message": FAILED}, status=401)
    with portal.db(write=True) as con:
        fingerprint, why = _check(con, portal, person_id, password, code, now)
        if fingerprint is None:
            if why.startswith("locked out"):
                events.record_event(
                    con, events.SIGN_IN_FAILED, now, person_id=person_id,
                    auth_method=PASSWORD_TOTP, client=client, detail=why,
                )  # fmt: skip
                return render(request, "sign_in.html",
                              {"message": "This account is locked for now; try again later."},
                              status=423)  # fmt: skip
            _fail(con, portal, person_id, client, why, now)
            return render(request, "sign_in.html", {"message": FAILED}, status=401)
        fresh = portal.sessions.sign_in(session, person_id, PASSWORD_TOTP, fingerprint, now)
        events.record_event(con, events.SIGN_IN, now, person_id=person_id,
                            auth_method=PASSWORD_TOTP, session=fresh.token, client=client,
                            detail="signed in")  # fmt: skip
    response = RedirectResponse("/queue", status_code=303)
    set_session_cookie(request, response, fresh)
    return response


async def sign_out(request: Request) -> Response:
    portal = portal_of(request)
    session = session_of(request)
    await checked_form(request, session)
    if session is not None and session.person_id is not None:
        with portal.db(write=True) as con:
            events.record_event(con, events.SIGN_OUT, portal.now(), person_id=session.person_id,
                                auth_method=session.auth_method, session=session.token,
                                client=client_of(request), detail="signed out")  # fmt: skip
    portal.sessions.end(session)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie("hitl_portal", path="/")
    return response


ROUTES = [
    Route("/sign-in", sign_in_page, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
]

"""Sign-in through the bank's OpenID Connect provider (Authlib, authorization-code flow).

Only when `portal.yaml` configures `oidc:` (`settings.OidcSettings`); otherwise these routes
answer 404. Authlib keeps its state and nonce in the portal's own server-side session (given to
it as `request.session`), checks them on the callback, exchanges the code and validates the ID
token (issuer, audience, signature by the provider's published keys, nonce). The provider's
subject is then mapped to a registry person by the explicit `subjects` table: the registry stays
the only source of who may act, and an unmapped subject or inactive person is refused (logged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hitl_gate.app.portal import events
from hitl_gate.app.portal.settings import OidcSettings
from hitl_gate.app.portal.web import (
    Forbidden,
    client_of,
    portal_of,
    render,
    session_of,
    set_session_cookie,
)
from hitl_gate.identity.registry import Registry
from hitl_gate.identity.store import load_registry

OIDC = "oidc"


class OidcRefused(ValueError):
    """A provider identity the portal does not accept (unmapped subject, inactive person)."""


def person_for_claims(
    oidc: OidcSettings, claims: Mapping[str, Any], registry: Registry, now: datetime
) -> str:
    """The registry person the validated ID token's subject maps to, or `OidcRefused`."""
    if str(claims.get("iss", "")).rstrip("/") != oidc.issuer.rstrip("/"):
        raise OidcRefused(f"ID token issued by {claims.get('iss')!r}, not {oidc.issuer!r}")
    subject = str(claims.get("sub", ""))
    person_id = oidc.person_for(subject)
    if person_id is None:
        raise OidcRefused("the provider's subject is not mapped to a person (oidc.subjects)")
    person = registry.people.get(person_id)
    if person is None or not person.is_active(now):
        raise OidcRefused(f"{person_id} is not an active person of the registry")
    return person_id


def identity_reference(oidc: OidcSettings, subject: str) -> str:
    """What stands for the signing key of an OIDC-signed-in person in their verdicts: a digest
    of issuer and subject (four-eyes counts people and these references, never typed names)."""
    return "oidc:" + hashlib.sha256(f"{oidc.issuer}\0{subject}".encode()).hexdigest()[:32]


def _client(request: Request, oidc: OidcSettings) -> Any:
    from authlib.integrations.starlette_client import OAuth  # type: ignore[import-untyped]

    state = request.app.state
    if getattr(state, "oauth", None) is None:
        oauth = OAuth()
        oauth.register(
            "bank",
            client_id=oidc.client_id,
            client_secret=oidc.client_secret,
            server_metadata_url=oidc.discovery_url,
            client_kwargs={"scope": " ".join(oidc.scopes)},
        )
        state.oauth = oauth
    return state.oauth.bank


def _configured(request: Request) -> OidcSettings:
    oidc = portal_of(request).config.settings.oidc
    if oidc is None:
        raise Forbidden("OpenID Connect sign-in is not configured", status=404)
    return oidc


def _with_session(request: Request) -> None:
    """Hand Authlib the portal's own session storage (it reads `request.session`)."""
    portal = portal_of(request)
    session = session_of(request)
    if session is None:
        raise Forbidden("open the sign-in page first", status=400)
    request.scope["session"] = session.oidc
    portal.sessions.update(session)


async def oidc_start(request: Request) -> Response:
    oidc = _configured(request)
    _with_session(request)
    response: Response = await _client(request, oidc).authorize_redirect(request, oidc.redirect_uri)
    return response


async def oidc_callback(request: Request) -> Response:
    """The provider's redirect back: a cross-site navigation, which carries no SameSite=Strict
    cookie; a same-site refresh to `/oidc/finish` (no script needed) brings the session."""
    _configured(request)
    target = "/oidc/finish?" + str(request.url.query)
    return render(request, "oidc_continue.html", {"target": target})


async def oidc_finish(request: Request) -> Response:
    from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]

    oidc = _configured(request)
    _with_session(request)
    portal, client = portal_of(request), client_of(request)
    now, session = portal.now(), session_of(request)
    with portal.db(write=True) as con:
        try:
            token = await _client(request, oidc).authorize_access_token(request)
            claims = dict(token.get("userinfo") or {})
            person_id = person_for_claims(oidc, claims, load_registry(con), now)
        except (OAuthError, OidcRefused) as error:
            events.record_event(con, events.SIGN_IN_FAILED, now, auth_method=OIDC,
                                client=client, detail=f"oidc: {error}")  # fmt: skip
            return render(request, "sign_in.html", {"message": "Sign-in failed."}, status=401)
        reference = identity_reference(oidc, str(claims["sub"]))
        fresh = portal.sessions.sign_in(session, person_id, OIDC, reference, now)
        events.record_event(con, events.SIGN_IN, now, person_id=person_id, auth_method=OIDC,
                            session=fresh.token, client=client, detail="signed in")  # fmt: skip
    response = RedirectResponse("/queue", status_code=303)
    set_session_cookie(request, response, fresh)
    return response


ROUTES = [
    Route("/oidc/start", oidc_start, methods=["GET"]),
    Route("/oidc/callback", oidc_callback, methods=["GET"]),
    Route("/oidc/finish", oidc_finish, methods=["GET"]),
]

"""The portal's Starlette application: routes, security headers and refusal handling."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitl_gate.app.portal import oidc, reviewer, signin
from hitl_gate.app.portal.web import (
    STATIC_DIR,
    AuditDatabaseBusy,
    Forbidden,
    NotSignedIn,
    Portal,
    PortalConfig,
    render,
)

# No inline script or style anywhere: the pages need nothing but their own stylesheet.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}

# Runs hold the audit file for seconds at a time; a browser or script may try again after this.
BUSY_RETRY_AFTER_S = 5

# The route groups, in order: add a group (a module with `ROUTES`) here.
ROUTE_GROUPS: tuple[Sequence[BaseRoute], ...] = (signin.ROUTES, oidc.ROUTES, reviewer.ROUTES)


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every response (static files too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        return RedirectResponse("/sign-in", status_code=303)
    return render(request, "refused.html", {"reason": "Sign in first."}, status=403)


async def _forbidden(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, Forbidden) else "refused"
    status = exc.status if isinstance(exc, Forbidden) else 403
    return render(request, "refused.html", {"reason": reason}, status=status)


async def _busy(request: Request, exc: Exception) -> Response:
    reason = exc.reason if isinstance(exc, AuditDatabaseBusy) else "the audit database is busy"
    response = render(request, "refused.html", {"reason": reason, "heading": "Busy"}, status=503)
    response.headers["retry-after"] = str(BUSY_RETRY_AFTER_S)
    return response


def build_app(config: PortalConfig, extra: Sequence[Sequence[BaseRoute]] = ()) -> Starlette:
    """The portal for `config`; `extra` route groups are added after the built-in ones."""
    routes: list[BaseRoute] = [r for group in (*ROUTE_GROUPS, *extra) for r in group]
    routes.append(Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            NotSignedIn: _not_signed_in,
            Forbidden: _forbidden,
            AuditDatabaseBusy: _busy,
        },
    )
    app.state.portal = Portal.create(config)
    return app


# Supervisor pages (issue 22.4, `supervisor.py`), registered apart from the groups above.
from hitl_gate.app.portal.supervisor import ROUTES as SUPERVISOR_ROUTES  # noqa: E402

ROUTE_GROUPS = (*ROUTE_GROUPS, SUPERVISOR_ROUTES)

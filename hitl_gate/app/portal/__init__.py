"""The review portal (`hitl portal serve`): a signed-in web workspace beside the file round trip.

Server-rendered Starlette + Jinja2, no JavaScript; docs/portal.md explains sign-in, enrolment,
OIDC, the verdict path and the security choices. Modules: `settings` (typed settings),
`credentials` (argon2id + TOTP, bound by the person's SSH signature), `sessions` (sessions,
CSRF, rate limit), `events` (sealed `portal_events`, lockout), `web` (shared plumbing),
`signin`, `reviewer` (route groups), `work`/`casepage` (queue and case data), `verdicts`
(portal verdicts and uploads through `review.intake.verdict_files.take_in_signed`), `oidc`,
`app` (`build_app`).

Extension points (stable; supervisor pages use them):
- **Add routes**: a module with `ROUTES: list[starlette.routing.Route]`, added to
  `app.ROUTE_GROUPS` (or passed as `build_app(config, extra=[module.ROUTES])`). Handlers are
  `async def handler(request: Request) -> Response`.
- **Require a signed-in person with a role**: `who = web.require_person(request,
  roles=[(domain, role), ...])` returns a `web.Principal` (person, session, registry); without a
  session it raises `NotSignedIn` (GET redirects to /sign-in, POST gets 403), without one of
  the roles it logs a `refused` event and raises `Forbidden` (403 page). Call it first in every
  handler: authorisation is per route, never by hiding links.
- **Forms and CSRF**: every form includes `<input type="hidden" name="csrf" value="{{ csrf }}">`;
  a POST handler reads its form only through `form = await web.checked_form(request,
  who.session)`, which refuses (and logs) a missing or wrong token.
- **Render a page**: `web.render(request, "name.html", {"who": who, ...}, status=200)`;
  templates live in `hitl_gate/app/portal/templates/`, extend `base.html` and fill
  `{% block title %}`, `{% block content %}` and optionally `{% block nav %}` (extra nav links).
  No inline script or style (the CSP forbids it); styles go in `static/portal.css`.
- **Database**: `with web.portal_of(request).db(write=False) as con:` a short-lived audit
  connection under the portal's lock (`write=True` for inserts); `portal.now()` is the clock.
- **Audit an act**: `events.record_event(con, kind, portal.now(), person_id=..., session=
  who.session.token, detail=...)` (sealed `portal_events`; tokens are stored as digests).
- **Refuse**: `web.refuse(request, who.session, reason, status=403)` logs and raises.
"""

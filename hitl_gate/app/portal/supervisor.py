"""Supervisor pages: queues and SLA dashboard, reassignment, escalations, reviewer quality.

A person supervises a queue when they hold the role of the queue it escalates to, or `admin`
in the domain (the same rule `hitl review reassign` applies, `assignments.supervisor_roles`);
they see those queues only. A reassignment is the supervisor's act attested by the portal, as
portal verdicts are: the portal signs a payload naming the supervisor, the key their
credential is bound to and the session (`assignments.reassign_in_portal`), every check of a
signed reassignment applies, and the batch's files are handed to the new assignee.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import duckdb
import polars as pl
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hitl_gate.app.portal import events
from hitl_gate.app.portal.web import (
    Portal,
    Principal,
    checked_form,
    client_of,
    portal_of,
    principal_of,
    refuse,
    render,
    require_person,
    session_of,
)
from hitl_gate.core.database import transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.registry import Person
from hitl_gate.identity.signatures import PORTAL
from hitl_gate.identity.signed_acts import act_payload, sign_payload
from hitl_gate.review.assignments import (
    PORTAL_REASSIGN_ACT,
    SUPERVISOR_ADMIN_ROLE,
    AssignmentError,
    Seat,
    current_assignee,
    eligible_assignees,
    other_opinion_holders,
    reassign_in_portal,
)
from hitl_gate.review.export.handover import hand_over
from hitl_gate.review.export.sealing import pipeline_identity
from hitl_gate.review.quality import Period, quality_report
from hitl_gate.review.settings import ReviewSettings, review_settings
from hitl_gate.review.supervision import open_batches, open_escalations, sla_dashboard

REASSIGN_EVENT = "reassign"
QUALITY_DAYS = 30


@dataclass(frozen=True)
class Scope:
    """The queues of one domain a person supervises."""

    domain: DomainConfig
    settings: ReviewSettings
    queues: tuple[str, ...]

    def escalation_role(self, queue: str) -> str | None:
        target = self.settings.queue(queue, self.domain).escalate_to
        return self.settings.queues[target].role if target else None


def scopes_of(person: Person, domains: dict[str, DomainConfig]) -> list[Scope]:
    """Per domain, the queues `person` supervises (domains with none are left out)."""
    found = []
    for domain in domains.values():
        settings = review_settings(domain)
        if settings is None:
            continue
        if person.holds(domain.name, SUPERVISOR_ADMIN_ROLE):
            queues = tuple(settings.queues)
        else:
            queues = tuple(
                name
                for name, queue in settings.queues.items()
                if queue.escalate_to
                and person.holds(domain.name, settings.queues[queue.escalate_to].role)
            )
        if queues:
            found.append(Scope(domain, settings, queues))
    return found


def _require_supervisor(request: Request) -> tuple[Principal, list[Scope]]:
    who = require_person(request)
    scopes = scopes_of(who.person, dict(portal_of(request).config.domains))
    if not scopes:
        refuse(request, who.session, f"{request.url.path}: needs a supervising role or admin")
    return who, scopes


def _supervisor_on(
    request: Request, con: duckdb.DuckDBPyConnection
) -> tuple[Principal, list[Scope]] | str:
    """`_require_supervisor` read on the page's own connection (one DuckDB open per page, not
    two): the principal and their scopes, or why not. The caller refuses after closing it
    (`refuse` opens the writer, which DuckDB refuses beside an open reader)."""
    who = principal_of(request, con)
    if isinstance(who, str):
        return who
    scopes = scopes_of(who.person, dict(portal_of(request).config.domains))
    if not scopes:
        return f"{request.url.path}: needs a supervising role or admin"
    return who, scopes


def _refuse_unless_supervisor(
    request: Request, found: tuple[Principal, list[Scope]] | str
) -> tuple[Principal, list[Scope]]:
    if isinstance(found, str):
        refuse(request, session_of(request), found)
    return found


def _rows(frame: pl.DataFrame, queues: tuple[str, ...]) -> list[dict[str, object]]:
    return frame.filter(pl.col("queue").is_in(list(queues))).to_dicts()


def _views(
    con: duckdb.DuckDBPyConnection, portal: Portal, who: Principal, scopes: list[Scope]
) -> list[dict[str, Any]]:
    """The dashboard's figures per domain, read on `con`."""
    now = portal.now()
    soon = timedelta(hours=portal.config.settings.due_soon_hours)
    views = []
    for scope in scopes:
        name = scope.domain.name
        batches = _rows(open_batches(con, name), scope.queues)
        pairs = other_opinion_holders(con, [str(b["batch_id"]) for b in batches])
        for batch in batches:
            batch_id, queue = str(batch["batch_id"]), str(batch["queue"])
            seat = Seat(
                batch_id, name, queue, scope.settings.queue(queue, scope.domain).role,
                str(batch["assignee_id"]), pairs.get(batch_id, {}),
            )  # fmt: skip
            # Only people the server would accept (one rule: `assignee_refusal`).
            batch["candidates"] = eligible_assignees(who.registry, seat, who.person_id, now)
        views.append(
            {
                "domain": name,
                "board": _rows(sla_dashboard(con, name, now, soon), scope.queues),
                "batches": batches,
                "escalations": _rows(open_escalations(con, name), scope.queues),
            }
        )
    return views


def _dashboard(
    request: Request, portal: Portal, who: Principal, views: list[dict[str, Any]],
    message: str = "", error: str = "", status: int = 200,
) -> Response:  # fmt: skip
    return render(
        request, "supervisor_dashboard.html",
        {"who": who, "views": views, "now": portal.now(), "message": message, "error": error},
        status=status,
    )  # fmt: skip


async def dashboard(request: Request) -> Response:
    portal = portal_of(request)
    with portal.db() as con:
        found = _supervisor_on(request, con)
        views = _views(con, portal, *found) if not isinstance(found, str) else []
    who, _ = _refuse_unless_supervisor(request, found)
    return _dashboard(request, portal, who, views)


async def reassign_batch(request: Request) -> Response:
    who, scopes = _require_supervisor(request)
    portal = portal_of(request)
    form = await checked_form(request, who.session)
    batch_id = str(form.get("batch_id", "")).strip()
    to = str(form.get("new_assignee", "")).strip()
    reason = str(form.get("reason", "")).strip()
    now = portal.now()
    with portal.db() as con:
        current = current_assignee(con, batch_id)
        domain_row = con.execute(
            "SELECT domain FROM review_assignments WHERE batch_id = ? AND seq = 1", [batch_id]
        ).fetchone()
    scope = next((s for s in scopes if domain_row and s.domain.name == domain_row[0]), None)
    if current is None or scope is None or current.queue not in scope.queues:
        refuse(request, who.session, "a batch outside the queues you supervise", status=404)
    session = who.session
    payload = act_payload(
        PORTAL_REASSIGN_ACT, at=now, person_id=who.person_id,
        person_fingerprint=session.signer_fingerprint or "",
        auth_method=session.auth_method or "", session=events.digest(session.token),
        batch_id=batch_id, domain=scope.domain.name, new_assignee=to, reason=reason,
        seq=current.seq + 1,
    )  # fmt: skip
    place = portal.config.place
    signed = sign_payload(payload, place.portal_key, PORTAL)
    queue = scope.settings.queue(current.queue, scope.domain)
    try:
        with portal.db(write=True) as con:
            with transaction(con):
                done = reassign_in_portal(
                    con, who.registry, payload, signed.signature, queue_role=queue.role,
                    escalation_role=scope.escalation_role(current.queue), now=now,
                )  # fmt: skip
            events.record_event(
                con, REASSIGN_EVENT, now, person_id=who.person_id,
                auth_method=session.auth_method, session=session.token,
                client=client_of(request),
                detail=f"batch {batch_id}: {done.previous_assignee} -> {to} ({reason})",
            )  # fmt: skip
            views = _views(con, portal, who, scopes)  # the writer's own reads: no new open
    except AssignmentError as error:
        with portal.db() as con:
            views = _views(con, portal, who, scopes)
        return _dashboard(request, portal, who, views, error=f"Refused: {error}", status=422)
    hand_over(
        place.batches_dir, batch_id, to=to, key=place.review_key, registry=who.registry,
        pipeline=pipeline_identity(portal.config.secrets_dir), at=now,
    )  # fmt: skip
    message = f"Batch {batch_id} reassigned from {done.previous_assignee} to {to}."
    return _dashboard(request, portal, who, views, message=message)


def _period(request: Request, now: datetime) -> tuple[date, date]:
    """The [from, to] days of the quality page (default: the last 30 days)."""
    try:
        end = date.fromisoformat(request.query_params.get("to", "") or now.date().isoformat())
        start = date.fromisoformat(
            request.query_params.get("from", "")
            or (end - timedelta(days=QUALITY_DAYS - 1)).isoformat()
        )
    except ValueError:
        end = now.date()
        start = end - timedelta(days=QUALITY_DAYS - 1)
    return (start, end) if start <= end else (end, start)


async def quality_page(request: Request) -> Response:
    portal = portal_of(request)
    start, end = _period(request, portal.now())
    period = Period(
        datetime.combine(start, time(), tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC),
    )
    reports = []
    with portal.db() as con:
        found = _supervisor_on(request, con)
        for scope in [] if isinstance(found, str) else found[1]:
            report = quality_report(con, scope.domain.name, period)
            reports.append({"domain": scope.domain.name, "reviewers": report.reviewers.to_dicts(),
                            "pairs": report.pairs})  # fmt: skip
    who, _ = _refuse_unless_supervisor(request, found)
    return render(request, "supervisor_quality.html",
                  {"who": who, "reports": reports, "start": start, "end": end})  # fmt: skip


ROUTES = [
    Route("/supervisor", dashboard, methods=["GET"]),
    Route("/supervisor/reassign", reassign_batch, methods=["POST"]),
    Route("/supervisor/quality", quality_page, methods=["GET"]),
]

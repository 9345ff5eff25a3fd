"""Reviewer pages: my queue, a case of it, the verdict form, and my batch offline.

Every route starts from `require_person`; a case is found only among the signed-in person's
own open cases (by its opaque id), so another reviewer's case by URL is refused like an
unknown one, and logged.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hitl_gate.app.portal import events
from hitl_gate.app.portal.casepage import CaseView, case_view
from hitl_gate.app.portal.sessions import Session
from hitl_gate.app.portal.verdicts import Submitter, one_row_file, take_in
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
from hitl_gate.app.portal.work import QueueItem, download_name, find_case, my_queue, read_batch
from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.assignments import current_assignee
from hitl_gate.review.intake.verdict_files import peek_batch_id

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def _queue(portal: Portal, con: duckdb.DuckDBPyConnection, who: Principal) -> list[QueueItem]:
    settings = portal.config.settings
    return my_queue(con, who.person_id, portal.config.place.review_key, portal.now(),
                    timedelta(hours=settings.due_soon_hours))  # fmt: skip


@dataclass(frozen=True)
class _Case:
    """A case page's data, read on one connection (refusals are logged after it closes)."""

    who: Principal
    item: QueueItem | None
    view: CaseView | None = None


def _read_case(request: Request, portal: Portal, with_view: bool) -> _Case:
    """The signed-in person, their case named by the URL's opaque id, and its page."""
    place = portal.config.place
    with portal.db() as con:
        who = principal_of(request, con)
        assert not isinstance(who, str)  # no roles asked: only NotSignedIn can refuse
        item = find_case(_queue(portal, con, who), str(request.path_params["ref"]))
        if item is None or not with_view:
            return _Case(who, item)
        batch = read_batch(place.batches_dir, item.batch_id, who.person_id, place.review_key,
                           portal.config.secrets_dir)  # fmt: skip
        domain = portal.config.domains[item.domain]
        view = case_view(con, item, batch, domain, portal.rule_texts, portal.config.contributions)
    return _Case(who, item, view)


def _my_case(request: Request, portal: Portal, with_view: bool = False) -> _Case:
    found = _read_case(request, portal, with_view)
    if found.item is None:
        refuse(request, found.who.session, "a case that is not in your open queue", status=404)
    return found


async def queue_page(request: Request) -> Response:
    portal = portal_of(request)
    with portal.db() as con:
        who = principal_of(request, con)
        assert not isinstance(who, str)  # no roles asked: only NotSignedIn can refuse
        items = _queue(portal, con, who)
    return render(request, "queue.html", {"who": who, "items": items})


async def case_page(request: Request) -> Response:
    found = _my_case(request, portal_of(request), with_view=True)
    return render(request, "case.html", {"who": found.who, "case": found.view, "outcome": None})


def _submitter(who: Principal, session: Session) -> Submitter:
    return Submitter(
        person_id=who.person_id,
        fingerprint=session.signer_fingerprint or "",
        auth_method=session.auth_method or "",
        session_digest=events.digest(session.token),
    )


async def submit_verdict(request: Request) -> Response:
    portal = portal_of(request)
    form = await checked_form(request, session_of(request))
    found = _my_case(request, portal)
    who, item = found.who, found.item
    assert item is not None
    place, now = portal.config.place, portal.now()
    batch = read_batch(place.batches_dir, item.batch_id, who.person_id, place.review_key,
                       portal.config.secrets_dir)  # fmt: skip
    answers = {
        "verdict": str(form.get("verdict", "")).strip(),
        "verdict_reason_code": str(form.get("verdict_reason_code", "")).strip(),
        "rationale": str(form.get("rationale", "")),
        "reviewer_id": who.person_id,
    }
    data = one_row_file(batch.header, batch.row_of(item.case_id), answers)
    fields = {"domain": item.domain, "batch_id": item.batch_id, "case_id": item.case_id,
              "verdict": answers["verdict"]}  # fmt: skip
    with portal.db(write=True) as con:
        outcome = take_in(
            con, who.registry, place, _submitter(who, who.session),
            domain=portal.config.domains[item.domain], data=data, suffix=".csv",
            name=f"portal verdict of {who.person_id}", fields=fields, now=now,
        )  # fmt: skip
        events.record_event(con, events.VERDICT, now, person_id=who.person_id,
                            auth_method=who.session.auth_method, session=who.session.token,
                            client=client_of(request), detail=outcome.summary())  # fmt: skip
    view = _read_case(request, portal, with_view=True).view if outcome.refused else None
    if view is not None:
        return render(request, "case.html", {"who": who, "case": view, "outcome": outcome},
                      status=422)  # fmt: skip
    return render(request, "done.html", {"who": who, "outcome": outcome},
                  status=422 if outcome.refused else 200)  # fmt: skip


def _my_batch(request: Request, portal: Portal, who: Principal) -> str:
    batch_id = str(request.path_params["batch_id"])
    with portal.db() as con:
        assignment = current_assignee(con, batch_id)
    if assignment is None or assignment.assignee_id != who.person_id:
        refuse(request, who.session, "a batch that is not assigned to you", status=404)
    return batch_id


async def download_batch(request: Request) -> Response:
    who = require_person(request)
    portal = portal_of(request)
    batch_id = _my_batch(request, portal, who)
    place = portal.config.place
    batch = read_batch(place.batches_dir, batch_id, who.person_id, place.review_key,
                       portal.config.secrets_dir)  # fmt: skip
    path, name = download_name(batch.folder)
    with portal.db(write=True) as con:
        events.record_event(con, events.DOWNLOAD, portal.now(), person_id=who.person_id,
                            session=who.session.token, detail=f"batch {batch_id}")  # fmt: skip
    return Response(
        path.read_bytes(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-{name}"'},
    )


async def upload_page(request: Request) -> Response:
    who = require_person(request)
    return render(request, "upload.html", {"who": who, "outcome": None})


async def upload_file(request: Request) -> Response:
    who = require_person(request)
    portal = portal_of(request)
    form = await checked_form(request, who.session)
    upload = form.get("file")
    filename = str(getattr(upload, "filename", "") or "")
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if upload is None or isinstance(upload, str) or suffix not in (".csv", ".xlsx"):
        return render(request, "upload.html", {"who": who, "outcome": None,
                      "message": "Choose the worked .xlsx or .csv file."}, status=400)  # fmt: skip
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return render(request, "upload.html", {"who": who, "outcome": None,
                      "message": "The file is too large."}, status=413)  # fmt: skip
    domain = _domain_of_upload(portal, data, suffix)
    now = portal.now()
    with portal.db(write=True) as con:
        outcome = take_in(
            con, who.registry, portal.config.place, _submitter(who, who.session), domain=domain,
            data=data, suffix=suffix, name=f"upload by {who.person_id}{suffix}",
            fields={"domain": domain.name, "upload": "worked batch file"}, now=now,
        )  # fmt: skip
        events.record_event(con, events.UPLOAD, now, person_id=who.person_id,
                            session=who.session.token, detail=outcome.summary())  # fmt: skip
    return render(request, "upload.html", {"who": who, "outcome": outcome},
                  status=422 if outcome.refused else 200)  # fmt: skip


def _domain_of_upload(portal: Portal, data: bytes, suffix: str) -> DomainConfig:
    """The domain whose name prefixes the file's batch id (else the only/first configured)."""
    with tempfile.TemporaryDirectory(prefix="hitl-portal-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        batch_id = peek_batch_id(path) or ""
    domains = portal.config.domains
    owners = [d for name, d in domains.items() if batch_id.startswith(f"{name}-")]
    return max(owners, key=lambda d: len(d.name)) if owners else next(iter(domains.values()))


async def home(request: Request) -> Response:
    return RedirectResponse("/queue", status_code=303)


ROUTES = [
    Route("/", home, methods=["GET"]),
    Route("/queue", queue_page, methods=["GET"]),
    Route("/case/{ref:str}", case_page, methods=["GET"]),
    Route("/case/{ref:str}/verdict", submit_verdict, methods=["POST"]),
    Route("/batch/{batch_id:str}/download", download_batch, methods=["GET"]),
    Route("/upload", upload_page, methods=["GET"]),
    Route("/upload", upload_file, methods=["POST"]),
]

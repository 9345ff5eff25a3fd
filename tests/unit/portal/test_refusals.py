"""Authorisation on every route: no session, wrong role, another person's case or batch by URL,
missing CSRF token; security headers; no application id in URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hitl_gate.app.portal.app import SECURITY_HEADERS, build_app
from hitl_gate.app.portal.web import require_person
from hitl_gate.core.database import audit_connection
from tests.identity_fixtures import registry_act
from tests.portal_fixtures import (
    PASSWORD,
    PortalWorld,
    TestClient,
    WorldTemplates,
    csrf_of,
    sign_in,
)

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2


@pytest.fixture
def world(tmp_path: Path, portal_worlds: WorldTemplates) -> PortalWorld:
    return portal_worlds.make(
        tmp_path, enrolled=("analyst-7", "analyst-12"), assigned={"credit_analyst": "analyst-7"}
    )


def _first_case(client: TestClient) -> str:
    page = client.get("/queue").text
    return page.split('href="/case/', 1)[1].split('"', 1)[0]


def test_no_session_pages_redirect_and_posts_are_refused(world: PortalWorld) -> None:
    client = world.client()
    ref = _first_case(world.signed_in("analyst-7"))
    for path in (
        "/queue",
        f"/case/{ref}",
        "/upload",
        f"/batch/{world.batch('credit_analyst')}/download",
    ):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    response = client.post(f"/case/{ref}/verdict", data={"verdict": "approve"})
    assert response.status_code == 403
    assert world.ws.count("SELECT count(*) FROM verdict_opinions") == 0


def test_another_reviewers_case_by_url_is_refused_and_logged(world: PortalWorld) -> None:
    ref = _first_case(world.signed_in("analyst-7"))
    other = world.signed_in("analyst-12")
    assert "APP-000" not in other.get("/queue").text
    assert other.get(f"/case/{ref}").status_code == 404
    page = other.get("/queue")
    posted = other.post(
        f"/case/{ref}/verdict", data={"csrf": csrf_of(page.text), "verdict": "approve"}
    )
    assert posted.status_code == 404
    assert world.ws.count("SELECT count(*) FROM verdict_opinions") == 0
    assert world.events("refused") == 2


def test_another_reviewers_batch_download_is_refused(world: PortalWorld) -> None:
    other = world.signed_in("analyst-12")
    response = other.get(f"/batch/{world.batch('credit_analyst')}/download")
    assert response.status_code == 404
    assert world.events("refused") == 1
    mine = world.signed_in("analyst-7").get(f"/batch/{world.batch('credit_analyst')}/download")
    assert mine.status_code == 200
    assert mine.content == (world.ws.batches["credit_analyst"].folder / "cases.xlsx").read_bytes()


def test_verdict_without_csrf_token_is_refused(world: PortalWorld) -> None:
    client = world.signed_in("analyst-7")
    ref = _first_case(client)
    response = client.post(f"/case/{ref}/verdict", data={"verdict": "approve"})
    assert response.status_code == 403
    wrong = client.post(f"/case/{ref}/verdict", data={"verdict": "approve", "csrf": "guess"})
    assert wrong.status_code == 403
    assert world.ws.count("SELECT count(*) FROM verdict_opinions") == 0
    assert world.events("refused") == 2


async def _supervisor_only(request: Request) -> Response:
    who = require_person(request, roles=[("consumer_credit", "supervisor")])
    return PlainTextResponse(f"hello {who.person_id}")


def test_a_route_needing_a_role_refuses_a_person_without_it(world: PortalWorld) -> None:
    """The extension point supervisor pages use: `require_person(request, roles=...)`."""
    world.enrol("lead")
    with audit_connection(world.ws.db) as con:
        registry_act(con, world.ws.keys, "admin", "set_grants", at=world.clock(),
                     person_id="lead", grants=["consumer_credit:supervisor"])  # fmt: skip
    app = build_app(world.config, extra=[[Route("/only", _supervisor_only)]])
    assert TestClient(app, follow_redirects=False).get("/only").status_code == 303
    analyst = TestClient(app, follow_redirects=False)
    sign_in(analyst, "analyst-7", PASSWORD, world.code("analyst-7"))
    assert analyst.get("/only").status_code == 403
    lead = TestClient(app, follow_redirects=False)
    sign_in(lead, "lead", PASSWORD, world.code("lead"))
    assert lead.get("/only").text == "hello lead"


def test_a_reviewer_who_lost_the_queue_role_cannot_give_a_verdict(world: PortalWorld) -> None:
    client = world.signed_in("analyst-7")
    ref = _first_case(client)
    page = client.get(f"/case/{ref}")
    with audit_connection(world.ws.db) as con:
        registry_act(con, world.ws.keys, "admin", "set_grants", at=world.clock(),
                     person_id="analyst-7", grants=[])  # fmt: skip
    response = client.post(
        f"/case/{ref}/verdict", data={"csrf": csrf_of(page.text), "verdict": "approve"}
    )
    assert response.status_code == 422
    assert "does not hold" in response.text
    assert world.ws.count("SELECT count(*) FROM verdict_opinions") == 0


def test_security_headers_on_every_response(world: PortalWorld) -> None:
    client = world.client()
    for response in (
        client.get("/sign-in"),
        client.get("/queue"),
        client.get("/static/portal.css"),
    ):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    assert "unsafe-inline" not in SECURITY_HEADERS["content-security-policy"]
    assert "<script" not in client.get("/sign-in").text


def test_no_application_id_in_urls(world: PortalWorld) -> None:
    client = world.signed_in("analyst-7")
    page = client.get("/queue").text
    links = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    assert links and not any("APP-" in link for link in links)

"""Supervisor pages: only supervisors see them, and only their queues; a reassignment is the
signed-in supervisor's act attested by the portal, refused where `reassign` refuses, and the
batch follows its new assignee; the quality page shows the figures of `review/quality.py`."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from hitl_gate.app.portal import events
from hitl_gate.core.database import audit_connection
from hitl_gate.identity.signatures import PORTAL, verify
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import current_assignee
from hitl_gate.review.manifest import batch_folder
from tests.portal_fixtures import PortalWorld, WorldTemplates, csrf_of

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2


@pytest.fixture
def world(tmp_path: Path, portal_worlds: WorldTemplates) -> PortalWorld:
    return portal_worlds.make(
        tmp_path,
        enrolled=("analyst-7", "analyst-12", "uw-ana", "comp-chen"),
        assigned={"credit_analyst": "analyst-7", "senior_underwriter": "uw-ana"},
    )


def _reassign(world: PortalWorld, client, csrf: str | None = None, **fields: str):  # noqa: ANN001, ANN202
    """Post a reassignment as the dashboard's form does (`csrf`: the session's token read from
    a page already fetched; the token is the session's, so one read serves every post)."""
    if csrf is None:
        csrf = csrf_of(client.get("/supervisor").text)
    data = {"csrf": csrf, "batch_id": world.batch("credit_analyst"),
            "new_assignee": "analyst-12", "reason": "analyst-7 on leave", **fields}  # fmt: skip
    return client.post("/supervisor/reassign", data=data)


def test_a_reviewer_is_refused_and_a_supervisor_sees_only_their_queues(
    world: PortalWorld,
) -> None:
    assert world.signed_in("analyst-7").get("/supervisor").status_code == 403
    assert world.signed_in("analyst-7").get("/supervisor/quality").status_code == 403
    page = world.signed_in("uw-ana").get("/supervisor")  # supervises credit_analyst only
    assert page.status_code == 200
    assert world.batch("credit_analyst") in page.text
    assert world.batch("senior_underwriter") not in page.text
    compliance = world.signed_in("comp-chen").get("/supervisor").text
    assert world.batch("senior_underwriter") in compliance
    assert world.batch("credit_analyst") not in compliance


def test_reassignment_is_attested_attributed_and_hands_the_batch_over(
    world: PortalWorld,
) -> None:
    response = _reassign(world, world.signed_in("uw-ana"))
    assert (
        response.status_code == 200 and "reassigned from analyst-7 to analyst-12" in response.text
    )
    batch_id = world.batch("credit_analyst")
    with audit_connection(world.ws.db, read_only=True) as con:
        current = current_assignee(con, batch_id)
        row = con.execute(
            "SELECT assigned_by, signer_fingerprint, reason FROM review_assignments "
            "WHERE batch_id = ? AND seq = ?", [batch_id, 2 if current is None else current.seq]
        ).fetchone()  # fmt: skip
        attestation = con.execute(
            "SELECT payload, signature, supervisor_id FROM portal_reassignments"
        ).fetchone()
        registry = load_registry(con)
        logged = con.execute(
            "SELECT count(*) FROM portal_events WHERE kind = 'reassign' AND person_id = 'uw-ana'"
        ).fetchone()
    assert current is not None and current.assignee_id == "analyst-12"
    assert row == ("uw-ana", world.ws.keys.fingerprint("uw-ana"), "analyst-7 on leave")
    payload, signature, supervisor = attestation
    fields = json.loads(payload)
    assert supervisor == "uw-ana" and fields["act"] == "portal_reassign"
    assert fields["session"] != "" and "token" not in payload
    portal_key = registry.people["portal"].keys[0].key
    verify(payload.encode(), signature, PORTAL, portal_key)  # anyone can check it
    assert logged == (1,)
    assert batch_folder(world.ws.batches_dir, batch_id, "analyst-12").is_dir()
    # The new assignee now has the cases; the former one does not.
    assert "/case/" in world.signed_in("analyst-12").get("/queue").text
    assert "/case/" not in world.signed_in("analyst-7").get("/queue").text


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"new_assignee": "uw-ana"}, "does not hold role 'analyst'"),
        ({"new_assignee": "nobody"}, "not an active, available person"),
        ({"new_assignee": "analyst-7"}, "already assigned"),
        ({"new_assignee": "comp-chen"}, "does not hold role 'analyst'"),
        ({"reason": " "}, "gives no reason"),
    ],
)
def test_refused_reassignments_change_nothing(
    world: PortalWorld, fields: dict[str, str], refusal: str
) -> None:
    response = _reassign(world, world.signed_in("uw-ana"), **fields)
    assert response.status_code == 422 and refusal in html.unescape(response.text)
    assert world.ws.count("SELECT count(*) FROM portal_reassignments") == 0


def _offered(page: str, batch_id: str) -> list[str]:
    """The people the dashboard's reassign dropdown of `batch_id` offers."""
    marker = f'aria-label="new assignee of {batch_id}"'
    if marker not in page:
        return []
    select = page.split(marker, 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]+)">', select)


def test_the_dropdown_offers_exactly_the_people_the_server_accepts(world: PortalWorld) -> None:
    """The analyst batch becomes the blind second opinion of a batch analyst-13 holds: the
    dropdown leaves analyst-13 out, a form posted with them anyway is refused by the server,
    and so is everyone else left out; the person offered is accepted."""
    batch = world.batch("credit_analyst")
    world.ws.person("analyst-13")
    world.ws.assign("B-FIRST-SLOT", "analyst-13", slot=1)
    with audit_connection(world.ws.db) as con:
        con.execute(
            "INSERT INTO review_second_opinion_cases VALUES (?, 'consumer_credit', 'APP-000', "
            "'B-FIRST-SLOT')",
            [batch],
        )
        people = sorted(load_registry(con).people)
    ana = world.signed_in("uw-ana")
    page = ana.get("/supervisor").text
    offered, csrf = _offered(page, batch), csrf_of(page)
    assert offered == ["analyst-12"]
    for person in (p for p in people if p not in offered):
        refused = _reassign(world, ana, csrf, new_assignee=person)
        assert refused.status_code == 422, person
    pair = _reassign(world, ana, csrf, new_assignee="analyst-13")
    assert "holds the other opinion of these four-eyes cases" in html.unescape(pair.text)
    assert world.ws.count("SELECT count(*) FROM portal_reassignments") == 0
    assert _reassign(world, ana, csrf, new_assignee=offered[0]).status_code == 200


def test_reassigning_outside_ones_queues_or_without_csrf_is_refused(world: PortalWorld) -> None:
    chen = world.signed_in("comp-chen")  # supervises senior_underwriter, not credit_analyst
    assert _reassign(world, chen).status_code == 404
    ana = world.signed_in("uw-ana")
    response = ana.post("/supervisor/reassign", data={"batch_id": world.batch("credit_analyst"),
                        "new_assignee": "analyst-12", "reason": "x"})  # fmt: skip
    assert response.status_code == 403
    assert world.ws.count("SELECT count(*) FROM portal_reassignments") == 0


def test_a_forged_attestation_is_refused_by_the_library(world: PortalWorld) -> None:
    """Someone with database access replays the portal's signature over another batch."""
    _reassign(world, world.signed_in("uw-ana"))
    from hitl_gate.review.assignments import AssignmentError, reassign_in_portal

    with audit_connection(world.ws.db) as con:
        payload, signature = con.execute(
            "SELECT payload, signature FROM portal_reassignments"
        ).fetchone()
        fields = json.loads(payload)
        fields["new_assignee"] = "analyst-7"
        fields["seq"] = 3
        from hitl_gate.core.digests import canonical_json

        with pytest.raises(AssignmentError, match="signature"):
            reassign_in_portal(con, load_registry(con), canonical_json(fields), signature,
                               queue_role="analyst", escalation_role="senior_underwriter",
                               now=world.clock())  # fmt: skip
        with pytest.raises(AssignmentError, match="next is 3"):  # the same bytes replayed
            reassign_in_portal(con, load_registry(con), payload.encode(), signature,
                               queue_role="analyst", escalation_role="senior_underwriter",
                               now=world.clock())  # fmt: skip


def test_quality_page_shows_the_period(world: PortalWorld) -> None:
    page = world.signed_in("uw-ana").get("/supervisor/quality?from=2018-03-01&to=2018-03-31")
    assert page.status_code == 200
    assert "Reviewer quality" in page.text and "No four-eyes pairs in the period." in page.text
    assert events.REFUSED == "refused"

"""A portal verdict and a signed file on the same case follow the same finality rules, in
either order: the first final verdict stands, a second disagreeing one is a conflict, four eyes
need two different people (a person answering once in the portal and once by file is one)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hitl_gate.app.portal.events import digest
from hitl_gate.app.portal.verdicts import Submitter, one_row_file, take_in
from hitl_gate.app.portal.work import read_batch
from hitl_gate.core.database import audit_connection
from hitl_gate.identity.store import load_registry
from hitl_gate.review.intake.results import IntakeOutcome
from tests.portal_fixtures import PortalWorld, make_world

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"


def _case_ids(world: PortalWorld, queue: str) -> list[str]:
    with (world.ws.batches[queue].folder / "cases.csv").open(encoding="utf-8") as handle:
        return [row["application_id"] for row in csv.DictReader(handle)]


def portal_verdict(
    world: PortalWorld, person: str, queue: str, case_id: str, verdict: str
) -> IntakeOutcome:
    """What the verdict route does (tested through HTTP elsewhere), for any case."""
    place, batch_id = world.config.place, world.batch(queue)
    batch = read_batch(place.batches_dir, batch_id, person, place.review_key, Path("/nonexistent"))
    answers = {"verdict": verdict, "rationale": f"{person} says {verdict}", "reviewer_id": person}
    data = one_row_file(batch.header, batch.row_of(case_id), answers)
    submitter = Submitter(person, world.ws.keys.fingerprint(person), "password+totp", digest("s"))
    with audit_connection(world.ws.db) as con:
        return take_in(
            con, load_registry(con), place, submitter, domain=world.ws.domain, data=data,
            suffix=".csv", name="portal", now=world.clock(),
            fields={"domain": world.ws.domain.name, "batch_id": batch_id, "case_id": case_id,
                    "verdict": verdict},
        )  # fmt: skip


def file_verdict(
    world: PortalWorld, person: str, queue: str, case_id: str, verdict: str
) -> IntakeOutcome:
    index = _case_ids(world, queue).index(case_id)
    answers = {"verdict": verdict, "rationale": f"{person} says {verdict}", "reviewer_id": person}
    path = world.ws.fill_csv(queue, f"{person}-{verdict}.csv", {index: answers})
    return world.ws.ingest(path, signer=person)


GIVE = {"portal": portal_verdict, "file": file_verdict}


def _state(world: PortalWorld, case_id: str) -> tuple[object, ...]:
    with audit_connection(world.ws.db) as con:
        final = con.execute(
            "SELECT verdict, reviewer_id FROM verdicts WHERE case_id = ?", [case_id]
        ).fetchall()
        opinions = con.execute(
            "SELECT reviewer_id, verdict FROM verdict_opinions WHERE case_id = ? "
            "ORDER BY reviewer_id",
            [case_id],
        ).fetchall()
        escalations = con.execute(
            "SELECT kind FROM review_escalations WHERE case_id = ?", [case_id]
        ).fetchall()
    return final, opinions, escalations


@pytest.mark.parametrize(("first", "second"), [("portal", "file"), ("file", "portal")])
def test_single_review_first_verdict_stands_either_order(
    tmp_path: Path, first: str, second: str
) -> None:
    world = make_world(tmp_path)
    world.ws.person("analyst-7")
    world.ws.assign(world.batch(ANALYST), "analyst-7")
    case = _case_ids(world, ANALYST)[0]
    one = GIVE[first](world, "analyst-7", ANALYST, case, "approve")
    two = GIVE[second](world, "analyst-7", ANALYST, case, "decline")
    assert (one.accepted, one.rejected) == (1, 0)
    assert two.rejected == 1
    assert any("already final ('approve'); recorded as a conflict" in m for m in two.messages)
    final, opinions, escalations = _state(world, case)
    assert final == [("approve", "analyst-7")]
    assert opinions == [("analyst-7", "approve")]
    assert escalations == [("conflict",)]


@pytest.mark.parametrize(("first", "second"), [("portal", "file"), ("file", "portal")])
def test_four_eyes_pair_across_portal_and_file_either_order(
    tmp_path: Path, first: str, second: str
) -> None:
    world = make_world(tmp_path)
    batch = world.batch(SENIOR)
    case = "APP-004"
    world.ws.person("uw-ana")
    world.ws.person("uw-ben")
    world.ws.assign(batch, "uw-ana")
    one = GIVE[first](world, "uw-ana", SENIOR, case, "approve")
    assert one.pending_second == 1
    world.ws.assign(batch, "uw-ben")
    two = GIVE[second](world, "uw-ben", SENIOR, case, "approve")
    assert (two.accepted, two.rejected) == (1, 0), two.messages
    final, opinions, _ = _state(world, case)
    assert final and final[0][0] == "approve"
    assert opinions == [("uw-ana", "approve"), ("uw-ben", "approve")]


@pytest.mark.parametrize(("first", "second"), [("portal", "file"), ("file", "portal")])
def test_one_person_in_portal_and_by_file_is_not_four_eyes(
    tmp_path: Path, first: str, second: str
) -> None:
    world = make_world(tmp_path)
    world.ws.person("uw-ana")
    world.ws.assign(world.batch(SENIOR), "uw-ana")
    case = "APP-004"
    GIVE[first](world, "uw-ana", SENIOR, case, "approve")
    two = GIVE[second](world, "uw-ana", SENIOR, case, "approve")
    assert two.accepted == 0 and two.rejected == 1
    final, opinions, _ = _state(world, case)
    assert final == [] and opinions == [("uw-ana", "approve")]

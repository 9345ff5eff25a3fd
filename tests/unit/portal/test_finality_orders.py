"""A portal verdict and a signed file on the same case follow the same finality rules, in
either order: the first final verdict stands, a second disagreeing one is a conflict, four eyes
need two different people (a person answering once in the portal and once by file is one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from tests.portal_fixtures import (
    PortalWorld,
    WorldTemplates,
    case_ids,
    file_verdict,
    portal_verdict,
)

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"


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
    tmp_path: Path, portal_worlds: WorldTemplates, first: str, second: str
) -> None:
    world = portal_worlds.make(tmp_path, assigned={ANALYST: "analyst-7"})
    case = case_ids(world, ANALYST)[0]
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
    tmp_path: Path, portal_worlds: WorldTemplates, first: str, second: str
) -> None:
    world = portal_worlds.make(tmp_path)
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
    tmp_path: Path, portal_worlds: WorldTemplates, first: str, second: str
) -> None:
    world = portal_worlds.make(tmp_path, assigned={SENIOR: "uw-ana"})
    case = "APP-004"
    GIVE[first](world, "uw-ana", SENIOR, case, "approve")
    two = GIVE[second](world, "uw-ana", SENIOR, case, "approve")
    assert two.accepted == 0 and two.rejected == 1
    final, opinions, _ = _state(world, case)
    assert final == [] and opinions == [("uw-ana", "approve")]

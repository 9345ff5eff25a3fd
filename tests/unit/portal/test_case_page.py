"""The case page shows the row exactly as the export masked it for the viewer's role, the
model's reasons and fired rules with their texts, and hides earlier opinions in blind review."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.portal_fixtures import TestClient, WorldTemplates, file_verdict
from tests.review_fixtures import RESTRICTED, SECRET_STATES, SECRET_TITLES

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2


def _shows(text: str, value: str) -> bool:
    """`value` appears as a value of its own, not inside a random token: a two-letter state
    code such as `WA` occurs by chance in session tokens and pseudonyms (letters, digits, `_`
    and `-`), which a plain substring test counted as a leak."""
    token = "A-Za-z0-9_\\-"
    return re.search(rf"(?<![{token}]){re.escape(value)}(?![{token}])", text) is not None


def _case_page(client: TestClient, case_id: str) -> str:
    queue = client.get("/queue").text
    row = queue.split(f">{case_id}</a>", 1)[0]
    ref = row.rsplit('href="/case/', 1)[1].split('"', 1)[0]
    page = client.get(f"/case/{ref}")
    assert page.status_code == 200
    return page.text


def test_inputs_are_masked_for_the_viewers_role_as_exported(
    tmp_path: Path, portal_worlds: WorldTemplates
) -> None:
    world = portal_worlds.make(
        tmp_path, enrolled=("analyst-7",), assigned={"credit_analyst": "analyst-7"}
    )
    page = _case_page(world.signed_in("analyst-7"), "APP-000")
    exported = (world.ws.batches["credit_analyst"].folder / "cases.csv").read_text()
    secrets = [*map(str, RESTRICTED["annual_income"]), *SECRET_TITLES, *SECRET_STATES]
    hidden = [secret for secret in secrets if not _shows(exported, secret)]
    assert len(hidden) >= len(SECRET_TITLES)  # the export masks them for an analyst
    assert not [secret for secret in hidden if _shows(page, secret)]
    assert "REV-BAND-D" in page  # the rule that fired
    assert "Existing debt is high relative to income" in page  # the model's reason, as exported


def test_a_blind_four_eyes_case_hides_the_other_opinion(
    tmp_path: Path, portal_worlds: WorldTemplates
) -> None:
    world = portal_worlds.make(tmp_path)
    world.enrol("uw-ana")
    world.ws.person("uw-ben")
    batch = world.batch("senior_underwriter")
    world.ws.assign(batch, "uw-ben")
    assert file_verdict(world, "uw-ben", "senior_underwriter", "APP-004", "decline").pending_second
    world.ws.assign(batch, "uw-ana")
    page = _case_page(world.signed_in("uw-ana"), "APP-004")
    assert "blind four-eyes review" in page
    assert "uw-ben" not in page and "uw-ben says decline" not in page

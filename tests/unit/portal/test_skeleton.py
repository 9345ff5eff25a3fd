"""Smoke: sign in with password and TOTP, see the queue, open a case, give a verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.portal_fixtures import WorldTemplates, csrf_of

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2


def test_sign_in_queue_case_and_verdict(tmp_path: Path, portal_worlds: WorldTemplates) -> None:
    world = portal_worlds.make(
        tmp_path, enrolled=("analyst-7",), assigned={"credit_analyst": "analyst-7"}
    )
    client = world.signed_in("analyst-7")
    queue = client.get("/queue")
    assert queue.status_code == 200
    assert "APP-000" in queue.text
    link = queue.text.split('href="/case/', 1)[1].split('"', 1)[0]
    case = client.get(f"/case/{link}")
    assert case.status_code == 200, case.text
    response = client.post(
        f"/case/{link}/verdict",
        data={"csrf": csrf_of(case.text), "verdict": "approve", "verdict_reason_code": "",
              "rationale": "fine"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert world.ws.count("SELECT count(*) FROM verdicts") == 1

"""Offline work bound to the person: a worked file uploaded to the portal enters the same
intake, attributed to the uploader; rows the uploader was not assigned are refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.portal_fixtures import PortalWorld, TestClient, WorldTemplates, csrf_of

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"


@pytest.fixture
def world(tmp_path: Path, portal_worlds: WorldTemplates) -> PortalWorld:
    return portal_worlds.make(
        tmp_path, enrolled=("analyst-7",), assigned={ANALYST: "analyst-7", SENIOR: "uw-ana"}
    )


def _upload(client: TestClient, path: Path) -> tuple[int, str]:
    page = client.get("/upload")
    response = client.post(
        "/upload",
        data={"csrf": csrf_of(page.text)},
        files={"file": (path.name, path.read_bytes(), "text/csv")},
    )
    return response.status_code, response.text


def _all_answered(world: PortalWorld, queue: str, name: str) -> Path:
    source = world.ws.batches[queue].folder / "cases.csv"
    with source.open(encoding="utf-8") as handle:
        count = sum(1 for _ in csv.DictReader(handle))
    answers = {i: {"verdict": "approve", "rationale": "checked offline"} for i in range(count)}
    return world.ws.fill_csv(queue, name, answers)


def test_an_uploaded_worked_file_is_taken_in_as_the_uploader(world: PortalWorld) -> None:
    status, text = _upload(world.signed_in("analyst-7"), _all_answered(world, ANALYST, "a.csv"))
    assert status == 200, text
    answered = world.ws.count("SELECT count(*) FROM verdicts WHERE reviewer_id = 'analyst-7'")
    assert answered == len(world.ws.batches[ANALYST].case_ids)
    assert world.ws.count("SELECT count(*) FROM portal_verdicts") == 1
    assert world.ws.count("SELECT count(*) FROM portal_events WHERE kind = 'upload'") == 1


def test_a_file_of_a_batch_assigned_to_someone_else_is_refused(world: PortalWorld) -> None:
    client, path = world.signed_in("analyst-7"), _all_answered(world, SENIOR, "s.csv")
    for _ in range(2):  # and again: refused the same way, each attempt attested
        status, text = _upload(client, path)
        assert status == 422
        assert "assigned to uw-ana" in text
    assert world.ws.count("SELECT count(*) FROM verdict_opinions") == 0
    assert world.ws.count("SELECT count(*) FROM portal_verdicts") == 2


def test_rows_of_another_batch_in_the_file_are_refused_row_by_row(world: PortalWorld) -> None:
    mine = _all_answered(world, ANALYST, "mine.csv")
    theirs = _all_answered(world, SENIOR, "theirs.csv")
    with mine.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with theirs.open(encoding="utf-8") as handle:
        stolen = next(csv.DictReader(handle))
    mixed = mine.with_name("mixed.csv")
    with mixed.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows([*rows, stolen])
    status, text = _upload(world.signed_in("analyst-7"), mixed)
    assert status == 422
    assert "is from batch" in text
    assert world.ws.count("SELECT count(*) FROM verdicts") == len(rows)
    assert world.ws.count(
        "SELECT count(*) FROM verdicts WHERE case_id = ?", [stolen["application_id"]]
    ) == 0  # fmt: skip

"""A blind four-eyes pair in the system Chromium (Playwright, headless).

The senior queue's four-eyes cases are exported as the pipeline exports them: with an assigner,
to two different people in two batches (slot 1 and slot 2), recorded by the export's own
`record_review_batches`. Both reviewers sign in with password and TOTP and decide the same
case in the portal. The second reviewer's case page must not reveal the first opinion (its
verdict, reason code, rationale, reviewer or batch) while the case is open; a supervisor cannot
hand the second slot to the first reviewer (not offered, and refused when posted); and the audit
database ends with two opinions on the case by two different people (two different keys) and
the final verdict they agree on.
Runs on the small portal workspace of the unit tests (tests/portal_fixtures.py), not a demo home.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hitl_gate.app.portal.work import case_ref
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import FIRST_OPINION, SECOND_OPINION, Assigner
from hitl_gate.review.export.batches import ReviewBatch, export_review_batches
from hitl_gate.review.export.days import ExportedDays, record_review_batches
from hitl_gate.review.manifest import load_manifest
from hitl_gate.review.settings import review_settings
from tests.browser import CHROMIUM, launch_chromium
from tests.portal_fixtures import KEY, PASSWORD, PortalWorld, portal_world
from tests.portal_server import free_port, serving
from tests.review_fixtures import (
    CREATED,
    DAY,
    Workspace,
    batch_export,
    record_export,
    review_cases,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs system Chromium")

CASE = "APP-004"  # a four-eyes case of the senior queue (tests/review_fixtures.review_cases)
SENIORS, SUPERVISOR = ("uw-ana", "uw-ben"), "comp-chen"
FIRST_RATIONALE = "First look: employer letter looks forged, income unverifiable"
SECOND_RATIONALE = "Second look: declined on the size of the loan against income"


def _paired_world(root: Path) -> tuple[PortalWorld, ReviewBatch, ReviewBatch]:
    """The review cases exported with an assigner to two seniors, recorded as a run records
    them; the portal over it. Returns the world and the slot-1 and slot-2 senior batches."""
    domain = load_domain("consumer_credit")
    settings = review_settings(domain)
    assert settings is not None
    ws = Workspace(root, domain, settings, KEY, {})
    for person in (*SENIORS, SUPERVISOR):
        ws.person(person)
    with audit_connection(ws.db) as con:
        registry = load_registry(con)
    batches = export_review_batches(
        review_cases(),
        batch_export(
            domain, ws.batches_dir, KEY, settings=settings,
            assigner=Assigner(registry, domain.name, CREATED,
                              needs_age_key=settings.encryption.enabled),
        ),
    )  # fmt: skip
    record_export(ws)  # the day's decisions (no unassigned batches: ws.batches is empty)
    with audit_connection(ws.db) as con:
        exported = ExportedDays(tuple((DAY, b) for b in batches), len(review_cases()))
        record_review_batches(con, domain.name, [DAY], exported, "r", CREATED)
    (first,) = [b for b in batches if b.opinion_slot == FIRST_OPINION]
    (second,) = [b for b in batches if b.opinion_slot == SECOND_OPINION]
    assert CASE in first.case_ids and CASE in second.case_ids
    assert {first.assignee_id, second.assignee_id} == set(SENIORS)  # two different people
    return portal_world(ws, root), first, second


def served(world: PortalWorld) -> AbstractContextManager[str]:
    """The world's portal on a free localhost port, for the block."""
    from hitl_gate.app.portal.app import build_app

    return serving(build_app(world.config), free_port())


def _signed_in(browser: Browser, url: str, world: PortalWorld, person: str) -> Page:
    """A fresh browser context signed in as `person` with password and TOTP."""
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    page.goto(f"{url}/sign-in")
    page.get_by_label("Person id").fill(person)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator").fill(world.code(person))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My queue")).to_be_visible()
    return page


def _open_case(page: Page, url: str) -> None:
    """From the person's queue to the case page of `CASE`."""
    from playwright.sync_api import expect

    page.goto(f"{url}/queue")
    page.get_by_role("link", name=CASE, exact=True).click()
    expect(page.get_by_role("heading", name=f"Case {CASE}")).to_be_visible()


def _give_verdict(page: Page, verdict: str, reason_code: str, rationale: str) -> None:
    from playwright.sync_api import expect

    form = page.locator("#verdict-form")
    form.get_by_label(verdict, exact=True).check()
    form.get_by_label("Reason code").select_option(reason_code)
    form.get_by_label("Rationale").fill(rationale)
    form.get_by_role("button", name="Submit verdict").click()
    expect(page.get_by_role("heading", name="Verdict recorded")).to_be_visible()


def _opinions(world: PortalWorld) -> list[tuple[object, ...]]:
    with audit_connection(world.ws.db, read_only=True) as con:
        return con.execute(
            "SELECT reviewer_id, stage, batch_id, verdict, verdict_reason_code, rationale, "
            "signer_fingerprint FROM verdict_opinions WHERE case_id = ? ORDER BY stage",
            [CASE],
        ).fetchall()


def test_a_blind_four_eyes_pair_decides_one_case_in_the_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    world, first, second = _paired_world(tmp_path)
    one, two = str(first.assignee_id), str(second.assignee_id)
    for person in (*SENIORS, SUPERVISOR):
        world.enrol(person)
    first_code, second_code = load_manifest(first.folder, KEY)["reason_codes"][:2]
    domain = world.ws.domain.name
    with served(world) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        first_reviewer = _signed_in(browser, url, world, one)
        _open_case(first_reviewer, url)
        expect(first_reviewer.locator("p.meta")).to_contain_text("blind review")
        _give_verdict(first_reviewer, "decline", first_code, FIRST_RATIONALE)
        first_reviewer.goto(f"{url}/queue")
        expect(first_reviewer.get_by_role("link", name=CASE, exact=True)).to_have_count(
            0
        )  # answered
        # The other slot's case by its URL is not theirs.
        refused = first_reviewer.goto(f"{url}/case/{case_ref(KEY, domain, second.batch_id, CASE)}")
        assert refused is not None and refused.status == 404
        assert [o[0] for o in _opinions(world)] == [one]  # recorded: there is one to hide

        # A supervisor cannot give the second opinion to the person who gave the first: the
        # dropdown does not offer them, and a form posted with them anyway (the page's own
        # session and CSRF token) is refused by the server.
        supervisor = _signed_in(browser, url, world, SUPERVISOR)
        supervisor.goto(f"{url}/supervisor")
        expect(supervisor.get_by_text(second.batch_id, exact=True)).to_be_visible()
        expect(
            supervisor.locator(
                f'select[aria-label="new assignee of {second.batch_id}"] option[value="{one}"]'
            )
        ).to_have_count(0)
        csrf = supervisor.locator('input[name="csrf"]').first.get_attribute("value")
        posted = supervisor.request.post(
            f"{url}/supervisor/reassign",
            form={"csrf": csrf or "", "batch_id": second.batch_id, "new_assignee": one,
                  "reason": "on leave"},
        )  # fmt: skip
        assert posted.status == 422
        assert f"Refused: {one} holds the other opinion" in unescape(posted.text())

        second_reviewer = _signed_in(browser, url, world, two)
        _open_case(second_reviewer, url)
        expect(second_reviewer.locator("p.meta")).to_contain_text("blind review")
        earlier = second_reviewer.locator(
            "section", has=second_reviewer.get_by_role("heading", name="Earlier opinions")
        )
        expect(earlier).to_have_text("Earlier opinions Hidden: this is a blind four-eyes review.",
                                     use_inner_text=True)  # fmt: skip
        expect(earlier.locator("table")).to_have_count(0)
        html = second_reviewer.content()
        for leak in (one, one.title(), FIRST_RATIONALE, first.batch_id):
            assert leak not in html, f"the second reviewer's page shows {leak!r}"
        _give_verdict(second_reviewer, "decline", second_code, SECOND_RATIONALE)
        browser.close()

    opinions = _opinions(world)
    assert [(o[0], o[1], o[2], o[3], o[4], o[5]) for o in opinions] == [
        (one, "first", first.batch_id, "decline", first_code, FIRST_RATIONALE),
        (two, "second", second.batch_id, "decline", second_code, SECOND_RATIONALE),
    ]
    fingerprints = [o[6] for o in opinions]
    assert fingerprints == [world.ws.keys.fingerprint(one), world.ws.keys.fingerprint(two)]
    assert fingerprints[0] != fingerprints[1]
    with audit_connection(world.ws.db, read_only=True) as con:
        final = con.execute("SELECT verdict FROM verdicts WHERE case_id = ?", [CASE]).fetchall()
        assignees = con.execute(
            "SELECT batch_id, arg_max(assignee_id, seq) FROM review_assignments "
            "WHERE batch_id IN (?, ?) GROUP BY batch_id ORDER BY batch_id",
            [first.batch_id, second.batch_id],
        ).fetchall()
    assert final == [("decline",)]
    assert dict(assignees) == {first.batch_id: one, second.batch_id: two}  # refused

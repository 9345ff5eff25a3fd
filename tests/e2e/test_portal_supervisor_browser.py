"""The supervisor's portal in the system Chromium (Playwright, headless): sign in with TOTP,
see the SLA dashboard, reassign a batch, and read the quality dashboard (four-eyes kappa with
its interval). Runs on the small portal workspace of the unit tests (tests/portal_fixtures.py),
not the demo home: nothing here needs a pipeline run, and it keeps the e2e suite short."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from tests.browser import CHROMIUM, launch_chromium
from tests.portal_fixtures import PASSWORD, PortalWorld, make_world
from tests.portal_server import free_port, serving
from tests.unit.review.supervision_rows import batch, opinion

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs system Chromium")


def served(world: PortalWorld) -> AbstractContextManager[str]:
    """The world's portal on a free localhost port, for the block."""
    from hitl_gate.app.portal.app import build_app

    return serving(build_app(world.config), free_port())


def _four_eyes_history(world: PortalWorld) -> None:
    """Twelve four-eyes cases decided by analyst-7 and analyst-12 in March 2026: 10 agree."""
    verdicts = [("approve", "approve")] * 6 + [("decline", "decline")] * 4
    verdicts += [("approve", "decline"), ("decline", "approve")]
    with audit_connection(world.ws.db) as con:
        batch(con, "hist-1", "credit_analyst", [f"H{i:02d}" for i in range(12)], "analyst-7",
              slot=1)  # fmt: skip
        for i, (first, second) in enumerate(verdicts):
            opinion(con, f"H{i:02d}", "hist-1", "analyst-7", first, hours=1, stage="first")
            opinion(con, f"H{i:02d}", "hist-2", "analyst-12", second, hours=3, stage="second")


def test_supervisor_reassigns_a_batch_and_reads_the_quality_dashboard(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    world = make_world(tmp_path)
    for person in ("analyst-7", "analyst-12", "uw-ana"):
        world.enrol(person)
    target = world.batch("credit_analyst")
    world.ws.assign(target, "analyst-7")
    _four_eyes_history(world)
    with served(world) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(f"{url}/sign-in")
        page.get_by_label("Person id").fill("uw-ana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Code from your authenticator").fill(world.code("uw-ana"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="My queue")).to_be_visible()

        page.goto(f"{url}/supervisor")
        expect(page.get_by_role("heading", name="Queues and SLA")).to_be_visible()
        board = page.locator("#sla-consumer_credit")
        expect(board).to_contain_text("analyst-7")
        page.get_by_label(f"new assignee of {target}").select_option("analyst-12")
        page.get_by_label(f"reason for {target}").fill("analyst-7 is on leave")
        page.locator("form.reassign", has=page.get_by_label(f"reason for {target}")).get_by_role(
            "button", name="Reassign"
        ).click()
        expect(
            page.get_by_text(f"Batch {target} reassigned from analyst-7 to analyst-12.")
        ).to_be_visible()
        expect(board).to_contain_text("analyst-12")

        page.get_by_role("link", name="Reviewer quality").first.click()
        page.get_by_label("From").fill("2026-03-01")
        page.get_by_label("To").fill("2026-03-31")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_role("heading", name="Reviewer quality")).to_be_visible()
        pair = page.get_by_role("row", name="analyst-12 + analyst-7")
        expect(pair).to_contain_text("12")
        expect(pair).to_contain_text("0.66")  # po 10/12, pe 0.5139: (0.8333-0.5139)/0.4861
        expect(pair).to_contain_text("[")  # an interval: twelve pairs are enough
        browser.close()
    with audit_connection(world.ws.db, read_only=True) as con:
        assert con.execute(
            "SELECT assignee_id FROM review_assignments WHERE batch_id = ? ORDER BY seq DESC "
            "LIMIT 1", [target]
        ).fetchone() == ("analyst-12",)  # fmt: skip

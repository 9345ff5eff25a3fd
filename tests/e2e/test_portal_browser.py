"""The review portal in the system Chromium (Playwright, headless) on the demo home: a reviewer
signs in with password and TOTP, opens their queue and a case, gives a verdict, and the next run
of the review loop executes it (route-level refusals: tests/unit/portal/)."""

from __future__ import annotations

import io
import sys

import pyotp
import pytest

from hitl_gate.core.home import HitlPaths
from tests.browser import CHROMIUM, launch_chromium
from tests.portal_server import free_port, serving

PASSWORD = "a long portal password"


def _set_up_portal(home: HitlPaths, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Register the portal's key, pick a reviewer with an open single-review case and enrol
    them (signed with their own demo key); (person id, case id)."""
    from datetime import UTC, datetime, timedelta

    from hitl_gate.app.cli import main
    from hitl_gate.app.demo_identities import DEMO_ADMIN, demo_key
    from hitl_gate.app.portal.config import portal_key_path
    from hitl_gate.app.portal.work import my_queue
    from hitl_gate.core.database import audit_connection
    from hitl_gate.identity.store import load_registry
    from hitl_gate.review.signing import load_or_create_key

    base = ["--home", str(home.home), "--domain", "consumer_credit"]
    main([*base, "portal", "key"])
    main([*base, "people", "add", "portal", "--name", "Review portal", "--grant", "*:portal",
          "--public-key", f"{portal_key_path(home.secrets_dir)}.pub",
          "--signing-key", str(demo_key(home, DEMO_ADMIN))])  # fmt: skip
    key, now = load_or_create_key(home.secrets_dir), datetime.now(UTC)
    with audit_connection(home.audit_db, read_only=True) as con:
        people = sorted(load_registry(con).people)
        open_cases = {
            person: [i for i in my_queue(con, person, key, now, timedelta(hours=4))
                     if i.queue == "credit_analyst" and i.opinion_slot == 0]
            for person in people
        }  # fmt: skip
    person = next(p for p in people if open_cases[p])
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    main([*base, "portal", "enrol", person, "--key", str(demo_key(home, person)),
          "--password-stdin"])  # fmt: skip
    return person, open_cases[person][0].case_id


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system Chromium")
def test_portal_verdict_in_the_browser_is_executed_by_the_next_run(
    demo_home: HitlPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from hitl_gate.app.portal.app import build_app
    from hitl_gate.app.portal.config import portal_config, portal_sealer
    from hitl_gate.app.portal.credentials import load_credential
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.audit.keys import checkpoint_signer
    from hitl_gate.core.database import audit_connection
    from hitl_gate.core.domain import load_domain
    from hitl_gate.core.settings import HitlSettings
    from pipelines.jobs import review_loop_job_name

    person, case = _set_up_portal(demo_home, monkeypatch)
    credential = load_credential(demo_home.secrets_dir, person)
    assert credential is not None
    domain = load_domain("consumer_credit")
    port = free_port()
    settings = HitlSettings(paths=demo_home)
    seal = portal_sealer(settings, checkpoint_signer(demo_home, settings.audit_keys))
    config = portal_config(demo_home, {domain.name: domain}, host="127.0.0.1", port=port, seal=seal)
    with serving(build_app(config), port) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(f"{url}/sign-in")
        page.get_by_label("Person id").fill(person)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Code from your authenticator").fill(
            pyotp.TOTP(credential.totp_secret).now()
        )
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="My queue")).to_be_visible()
        assert case not in page.url
        page.get_by_role("link", name=case, exact=True).click()
        expect(page.get_by_role("heading", name=f"Case {case}")).to_be_visible()
        assert case not in page.url  # the case page is addressed by an opaque id
        page.locator("input[name=verdict][value=decline]").check()
        page.get_by_label("Rationale").fill("Declined in the portal: income not verified.")
        page.get_by_role("button", name="Submit verdict").click()
        expect(page.get_by_role("heading", name="Verdict recorded")).to_be_visible()
        browser.close()

    with audit_connection(demo_home.audit_db, read_only=True) as con:
        verdict, day = con.execute(
            "SELECT v.verdict, d.partition_date FROM verdicts v JOIN decisions d "
            "USING (domain, case_id) WHERE v.domain = ? AND v.case_id = ? AND v.reviewer_id = ?",
            [domain.name, case, person],
        ).fetchall()[0]
        attested = con.execute(
            "SELECT count(*) FROM portal_verdicts WHERE case_id = ? AND person_id = ?",
            [case, person],
        ).fetchall()[0][0]
    assert verdict == "decline" and attested == 1
    result = run_job(settings, review_loop_job_name(domain), start=day, end=day)
    raise_for_failure(result, "review loop after the portal verdict")
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        executed = con.execute(
            "SELECT action, decided_by FROM executions WHERE domain = ? AND case_id = ?",
            [domain.name, case],
        ).fetchall()
    assert executed == [("decline", "reviewer")]

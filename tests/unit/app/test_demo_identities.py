"""The demo's people: real keys under the home, registered once, none outside the demo."""

from __future__ import annotations

import stat

import pytest

from hitl_gate.app.demo_identities import DEMO_ADMIN, ensure_demo_people
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.store import load_registry

pytestmark = pytest.mark.slow  # ssh-keygen


def test_demo_people_are_registered_once_with_keys_only_in_the_home(tmp_path) -> None:
    paths = HitlPaths.at(tmp_path / "home")
    domains = [load_domain("consumer_credit", ()), load_domain("lending_club", ())]
    people = ensure_demo_people(paths, domains)
    again = ensure_demo_people(paths, domains)
    assert [p.fingerprint for p in people] == [p.fingerprint for p in again]
    with audit_connection(paths.audit_db) as con:
        registry = load_registry(con)
        acts = con.execute("SELECT count(*) FROM people_acts").fetchone()
    assert acts == (len(people),)
    assert registry.people[DEMO_ADMIN].is_admin
    analyst = registry.people["demo-analyst-1"]
    assert analyst.holds("consumer_credit", "analyst")
    assert not analyst.holds("lending_club", "analyst")
    assert registry.people["demo-loan-officer-2"].holds("lending_club", "loan_officer")
    assert registry.people["demo-policy-owner"].holds("lending_club", "policy_owner")
    assert all("DEMO" in p.display_name for p in registry.people.values())
    keys_folder = paths.home / "demo-keys"
    assert stat.S_IMODE(keys_folder.stat().st_mode) == 0o700
    assert all(p.key_path.parent == keys_folder for p in people)


def test_the_shipped_domains_hold_no_private_key() -> None:
    from hitl_gate.core.domain import PROJECT_ROOT

    shipped = [
        path
        for folder in ("domains", "review_exports", "policies", "hitl_gate")
        for path in (PROJECT_ROOT / folder).rglob("*")
        if path.is_file() and b"PRIVATE KEY-----" in path.read_bytes()
    ]
    assert shipped == []

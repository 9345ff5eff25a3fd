"""A real people registry for review export tests: an administrator and reviewers with keys.

People are registered by signed acts (`tests.identity_fixtures`), so assignment reads exactly
what a deployment's registry holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hitl_gate.core.database import audit_connection
from hitl_gate.identity.registry import Registry
from tests.blank_audit_db import blank_if_missing
from tests.identity_fixtures import Keyring, add_person, bootstrap, registry_act

DOMAIN = "consumer_credit"
# Registered before the review fixtures' export time (2018), so they are active then.
SINCE = datetime(2017, 1, 1, tzinfo=UTC)
# Two people per review role of consumer_credit, and a supervisor-only compliance officer.
REVIEWERS = {
    "ana": "analyst",
    "bob": "analyst",
    "sue": "senior_underwriter",
    "sam": "senior_underwriter",
    "cho": "compliance",
}


def register_reviewers(
    db: Path, keys: Keyring, people: dict[str, str] | None = None, domain: str = DOMAIN
) -> Registry:
    """Bootstrap `admin` and add each person with `<domain>:<role>`; the registry."""
    with audit_connection(blank_if_missing(db)) as con:
        registry = bootstrap(con, keys, at=SINCE)
        for person, role in (REVIEWERS if people is None else people).items():
            registry = add_person(con, keys, person, [f"{domain}:{role}"], at=SINCE)
    return registry


def set_availability(db: Path, keys: Keyring, person: str, **fields: object) -> Registry:
    """Declare `person`'s daily capacity and unavailability windows (a signed act)."""
    with audit_connection(db) as con:
        return registry_act(
            con, keys, "admin", "set_availability", at=SINCE, person_id=person, **fields
        )

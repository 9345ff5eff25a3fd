"""Demo people: labelled stand-in identities with real SSH keys, made under the demo's home.

The shipped configuration has no active identity: a deployment registers its own people
(`hitl people add`). The demo needs people to close the review loop with no prompt, so it makes
them here, in the home it runs in: an administrator, two people per review role of every demo
domain and one per operational duty (policy owner, policy approver, model owner, compliance),
each with an ed25519 key made by `ssh-keygen` under `<home>/demo-keys` (mode 0700).
Every name says DEMO; none of these keys exists outside that home.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.keys import parse_public_key
from hitl_gate.identity.registry import Registry
from hitl_gate.identity.signatures import new_key_pair
from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act
from hitl_gate.review.settings import review_settings

DEMO_ADMIN = "demo-admin"
DEMO_KEYS_FOLDER = "demo-keys"
PEOPLE_PER_ROLE = 2
# One demo person per operational duty, with these roles in every demo domain (docs/people.md):
# an owner and an approver make the two people an activation or a resume needs.
OPERATIONAL_PEOPLE = {
    "demo-policy-owner": ("policy_owner", "operator"),
    "demo-policy-approver": ("policy_approver", "operator"),
    "demo-model-owner": ("model_owner",),
    "demo-compliance": ("compliance",),
}


@dataclass(frozen=True)
class DemoPerson:
    """A demo identity: its id, grants and the private key file that signs its acts."""

    person_id: str
    grants: tuple[str, ...]
    key_path: Path

    @property
    def public_line(self) -> str:
        return Path(f"{self.key_path}.pub").read_text(encoding="ascii").strip()

    @property
    def fingerprint(self) -> str:
        return parse_public_key(self.public_line).fingerprint


def demo_key(paths: HitlPaths, person_id: str) -> Path:
    """The demo person's private key, made once with `ssh-keygen` (no passphrase: a demo)."""
    folder = paths.home / DEMO_KEYS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{person_id}_ed25519"
    if not path.exists():
        new_key_pair(path, f"DEMO {person_id}")
    return path


def demo_people(paths: HitlPaths, domains: list[DomainConfig]) -> list[DemoPerson]:
    """The administrator, then `PEOPLE_PER_ROLE` people per review role over the demo domains."""
    roles: dict[str, list[str]] = {}
    for domain in domains:
        settings = review_settings(domain)
        for role in settings.roles if settings else ():
            roles.setdefault(role, []).append(f"{domain.name}:{role}")
    people = [DemoPerson(DEMO_ADMIN, ("*:admin",), demo_key(paths, DEMO_ADMIN))]
    for role, grants in sorted(roles.items()):
        for number in range(1, PEOPLE_PER_ROLE + 1):
            person_id = f"demo-{role.replace('_', '-')}-{number}"
            people.append(DemoPerson(person_id, tuple(grants), demo_key(paths, person_id)))
    for person_id, duties in OPERATIONAL_PEOPLE.items():
        grants = [f"{domain.name}:{duty}" for duty in duties for domain in domains]
        people.append(DemoPerson(person_id, tuple(grants), demo_key(paths, person_id)))
    return people


def ensure_demo_people(paths: HitlPaths, domains: list[DomainConfig]) -> list[DemoPerson]:
    """Register every demo person not yet in the home's registry, signed by the demo admin."""
    people = demo_people(paths, domains)
    admin_key = people[0].key_path
    with audit_connection(paths.audit_db) as con:
        registry = load_registry(con)
        for person in people:
            if person.person_id not in registry.people:
                registry = _register(con, registry, person, admin_key)
    return people


def _register(
    con: duckdb.DuckDBPyConnection, registry: Registry, person: DemoPerson, admin_key: Path
) -> Registry:
    payload = draft_act(
        registry,
        "add_person",
        person_id=person.person_id,
        display_name=f"DEMO {person.person_id} (automated, not a person)",
        grants=list(person.grants),
        keys=[{"public_key": person.public_line}],
    )
    signer = person.key_path if registry.acts == 0 else admin_key
    return append_act(con, sign_act(payload, signer))

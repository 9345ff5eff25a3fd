"""Signed policy acts for tests: a registry with policy people, and helpers that sign with
their real keys (`tests.identity_fixtures.Keyring`) exactly as `hitl policy ...` does.

People (grants in every domain, `*`): `admin` (`*:admin`), `ann` (policy_owner, operator),
`bob` (policy_approver, operator), `cat` (operator), `cora` (compliance: retention).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb

from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.signatures import AUTOMATION, MODELS, POLICY
from hitl_gate.identity.signed_acts import sign_payload
from models.registry import Promotion, promote, promotion_payload
from policies.control import (
    HaltState,
    activation_payload,
    approval_payload,
    approve_activation,
    halt_payload,
    pending_activation,
    record_activation,
    rollback,
    rollback_payload,
    rollback_target,
    set_halt,
)
from policies.model import Policy
from tests.identity_fixtures import Keyring, add_person, bootstrap

POLICY_PEOPLE = {
    "ann": ["*:policy_owner", "*:operator"],
    "bob": ["*:policy_approver", "*:operator"],
    "cat": ["*:operator"],
    "cora": ["*:compliance"],
}


def keyring(tmp_path: Path) -> Keyring:
    """The test's keyring in `tmp_path/keys`, knowing the keys made there before."""
    return Keyring.of(tmp_path / "keys")


def staff_policy_people(con: duckdb.DuckDBPyConnection, keys: Keyring) -> None:
    """The administrator, then ann, bob and cat with their grants."""
    bootstrap(con, keys)
    for person, grants in POLICY_PEOPLE.items():
        add_person(con, keys, person, grants)


def activate(
    con: duckdb.DuckDBPyConnection,
    keys: Keyring,
    domain: DomainConfig,
    policy: Policy,
    *,
    by: str = "ann",
    approver: str | None = "bob",
    today: date | None = None,
) -> int:
    """Activation signed by `by`, approved by `approver` (None: left pending); the last seq."""
    payload = activation_payload(domain.name, policy)
    seq = record_activation(
        con, domain, policy, sign_payload(payload, keys.private(by), POLICY), today=today
    )
    if approver is None:
        return seq
    approval = approval_payload(domain.name, pending_activation(con, domain.name))
    act = sign_payload(approval, keys.private(approver), POLICY)
    return approve_activation(con, domain, act, today=today)


def roll_back(
    con: duckdb.DuckDBPyConnection, keys: Keyring, domain: DomainConfig, *, by: str = "cat"
) -> Policy:
    payload = rollback_payload(domain.name, rollback_target(con, domain), reason="test")
    return rollback(con, domain, sign_payload(payload, keys.private(by), POLICY))


def switch(
    con: duckdb.DuckDBPyConnection,
    keys: Keyring,
    domain: str,
    *,
    halted: bool,
    reason: str = "test",
    signers: Sequence[str] | None = None,
) -> HaltState:
    """Halt (default signer ann) or resume (default signers ann and bob)."""
    people = signers or (["ann"] if halted else ["ann", "bob"])
    payload = halt_payload(con, domain, halted=halted, reason=reason)
    acts = [sign_payload(payload, keys.private(p), AUTOMATION) for p in people]
    return set_halt(con, domain, halted=halted, acts=acts)


MODEL_DOMAIN = "consumer_credit"


def staff_model_owners(audit_db: Path, keys: Keyring) -> None:
    """An audit database whose registry has `alice` and `bob`, model owners of consumer_credit."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(audit_db) as con:
        bootstrap(con, keys)
        for person in ("alice", "bob"):
            add_person(con, keys, person, [f"{MODEL_DOMAIN}:model_owner"])


def signed_promote(
    keys: Keyring,
    by: str,
    model_name: str,
    version: str | None,
    *,
    alias: str,
    mlflow_dir: Path,
    audit_db: Path,
    reason: str | None = None,
) -> Promotion:
    """`models.registry.promote` with `by`'s signature, as `hitl model promote` makes it."""
    payload = promotion_payload(MODEL_DOMAIN, model_name, version, alias=alias, reason=reason)
    return promote(
        model_name,
        version,
        alias=alias,
        act=sign_payload(payload, keys.private(by), MODELS),
        domain=MODEL_DOMAIN,
        mlflow_dir=mlflow_dir,
        audit_db=audit_db,
    )


def staffed_home(audit_db: Path, tmp_path: Path) -> Keyring:
    """A home's registry with the policy people (ann, bob, cat, cora); their keyring."""
    from hitl_gate.core.database import audit_connection

    keys = keyring(tmp_path)
    with audit_connection(audit_db) as con:
        staff_policy_people(con, keys)
    return keys


def demo_signing_key(home: Path, person_id: str) -> list[str]:
    """`--signing-key` of a demo person of a demo home (hitl_gate/app/demo_identities.py)."""
    from hitl_gate.app.demo_identities import DEMO_KEYS_FOLDER

    return ["--signing-key", str(home / DEMO_KEYS_FOLDER / f"{person_id}_ed25519")]


def demo_keyring(home: Path) -> Keyring:
    """The demo people's keys of a demo home, by person id (for library-level signed acts)."""
    from hitl_gate.app.demo_identities import DEMO_KEYS_FOLDER

    return Keyring.of(home / DEMO_KEYS_FOLDER)

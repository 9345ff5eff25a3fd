"""Signed operational acts attacked as an insider would: each attack is refused with its reason
and changes nothing (no row recorded, the policy in force and the kill switch unchanged).

The registry: `admin`; `ann` policy owner and operator (two keys: `ann`, `ann-laptop`); `bob`
policy approver and operator; `cat` operator only; `dan` policy owner whose key expired; `eve`
policy owner whose key was revoked; `fay` policy owner, revoked as a person. `mallory` has a key
nobody registered.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from hitl_gate.audit.retention_acts import (
    RetentionNotAuthorised,
    authorise_retention,
    retention_payload,
)
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import (
    AUTOMATION,
    MODELS,
    POLICY,
    RETENTION,
    VERDICTS,
    sign_bytes,
)
from hitl_gate.identity.signed_acts import SignedPayload, sign_payload
from models.registry import PromotionError, promote, promotion_payload
from policies.control import (
    PolicyControlError,
    activation_payload,
    approval_payload,
    approve_activation,
    halt_payload,
    halt_state,
    pending_activation,
    policy_in_force,
    record_activation,
    rollback,
    rollback_payload,
    set_halt,
)
from policies.engine import load_policy
from policies.model import Policy
from tests.identity_fixtures import Keyring, add_person, registry_act
from tests.signed_acts_fixtures import activate, keyring, staff_policy_people, switch

pytestmark = pytest.mark.slow  # every attack runs ssh-keygen

DOMAIN = "consumer_credit"
PAST = datetime.now(UTC) - timedelta(days=1)
TODAY = datetime.now(UTC).date()


@dataclass
class Scene:
    """One attack's world: a copy of the staffed audit DB, the keys and the policies."""

    con: duckdb.DuckDBPyConnection
    keys: Keyring
    domain: DomainConfig
    v2: Policy
    tmp_path: Path
    saved: dict[str, SignedPayload] = field(default_factory=dict)

    def sign(self, name: str, payload: bytes, namespace: str = POLICY) -> SignedPayload:
        return sign_payload(payload, self.keys.private(name), namespace)

    def activation(self, name: str, policy: Policy | None = None, **kw: object) -> int:
        policy = policy or self.v2
        act = self.sign(name, activation_payload(DOMAIN, policy, **kw))  # type: ignore[arg-type]
        return record_activation(self.con, self.domain, policy, act)

    def approval(self, name: str, namespace: str = POLICY) -> int:
        payload = approval_payload(DOMAIN, pending_activation(self.con, DOMAIN))
        return approve_activation(self.con, self.domain, self.sign(name, payload, namespace))

    def rows(self) -> tuple[int, int, int, int]:
        found = self.con.execute(
            "SELECT (SELECT count(*) FROM policy_activations), "
            "(SELECT count(*) FROM automation_halts), (SELECT count(*) FROM model_promotions), "
            "(SELECT count(*) FROM retention_authorisations)"
        ).fetchall()
        return found[0]


def _world(folder: Path) -> Path:
    keys = Keyring(folder / "keys")
    keys.folder.mkdir(parents=True)
    db = folder / "audit.duckdb"
    with audit_connection(db) as con:
        staff_policy_people(con, keys)
        registry_act(con, keys, "admin", "add_key", person_id="ann",
                     public_key=keys.public_line("ann-laptop"))  # fmt: skip
        registry_act(con, keys, "admin", "add_person", person_id="dan", display_name="Dan",
                     grants=["*:policy_owner"], keys=[{"public_key": keys.public_line("dan"),
                     "valid_before": PAST.isoformat()}])  # fmt: skip
        add_person(con, keys, "eve", ["*:policy_owner"])
        registry_act(con, keys, "admin", "revoke_key", person_id="eve",
                     fingerprint=keys.fingerprint("eve"))  # fmt: skip
        add_person(con, keys, "fay", ["*:policy_owner"])
        registry_act(con, keys, "admin", "revoke_person", person_id="fay")
        add_person(con, keys, "mo", ["consumer_credit:model_owner"])
        keys.private("mallory")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _world(tmp_path_factory.mktemp("acts-world"))


@pytest.fixture
def scene(world: Path, tmp_path: Path):  # noqa: ANN201 - yields a Scene
    shutil.copy(world / "audit.duckdb", tmp_path / "audit.duckdb")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        yield Scene(
            con,
            Keyring.of(world / "keys"),
            load_domain(DOMAIN),
            load_policy(Path(__file__).parents[3] / "policies" / DOMAIN / "v2.yaml"),
            tmp_path,
        )


# --- the attacks: (setup before the attack, the attack, the refusal it must meet) -------------


def _same_key_two_names(s: Scene) -> None:
    with pytest.raises(RegistryError, match="already registered to ann: one key, one person"):
        add_person(s.con, s.keys, "ann-alt", ["*:policy_approver"], key_name="ann")
    s.approval("ann")


def _resume_one_key_two_names(s: Scene) -> None:
    with pytest.raises(RegistryError, match="already registered to bob"):
        add_person(s.con, s.keys, "bob-alt", ["*:operator"], key_name="bob")
    switch(s.con, s.keys, DOMAIN, halted=False, signers=["bob", "bob"])


def _approval_over_another_digest(s: Scene) -> None:
    pending = pending_activation(s.con, DOMAIN)
    v1 = load_policy(s.domain.policy_path).digest.encode()
    forged = approval_payload(DOMAIN, pending).replace(pending.policy.digest.encode(), v1)
    approve_activation(s.con, s.domain, s.sign("bob", forged))


def _activated_and_approved(s: Scene) -> None:
    s.saved["activation"] = s.sign("ann", activation_payload(DOMAIN, s.v2))
    record_activation(s.con, s.domain, s.v2, s.saved["activation"])
    s.approval("bob")


def _approved_then_activated_again(s: Scene) -> None:
    s.activation("ann")
    approval = s.sign("bob", approval_payload(DOMAIN, pending_activation(s.con, DOMAIN)))
    approve_activation(s.con, s.domain, approval)
    s.saved["approval"] = approval
    s.activation("ann", reason="again")


def _halt_signatures_as_resume(s: Scene) -> None:
    payload = halt_payload(s.con, DOMAIN, halted=True, reason="x")
    acts = [s.sign(p, payload, AUTOMATION) for p in ("ann", "bob")]
    set_halt(s.con, DOMAIN, halted=False, acts=acts)


def _approval_by_activation_signature(s: Scene) -> None:
    approve_activation(s.con, s.domain, s.sign("bob", activation_payload(DOMAIN, s.v2)))


ATTACKS: dict[str, tuple[Callable[[Scene], None] | None, Callable[[Scene], object], str]] = {
    "activation and approval by one key under two names": (
        lambda s: s.activation("ann"),
        _same_key_two_names,
        "needs 2 different people",
    ),
    "approval by the activator's second key (one person, two keys)": (
        lambda s: s.activation("ann"),
        lambda s: s.approval("ann-laptop"),
        "needs 2 different people; got ann .*, ann ",
    ),
    "resume by one key under two names": (
        lambda s: switch(s.con, s.keys, DOMAIN, halted=True),
        _resume_one_key_two_names,
        "resume .* needs 2 different people",
    ),
    "resume by one person's two keys": (
        lambda s: switch(s.con, s.keys, DOMAIN, halted=True),
        lambda s: switch(s.con, s.keys, DOMAIN, halted=False, signers=["ann", "ann-laptop"]),
        "resume .* needs 2 different people",
    ),
    "resume by one person alone": (
        lambda s: switch(s.con, s.keys, DOMAIN, halted=True),
        lambda s: switch(s.con, s.keys, DOMAIN, halted=False, signers=["bob"]),
        "needs 2 signatures, got 1",
    ),
    "approval signature over another policy digest": (
        lambda s: s.activation("ann"),
        _approval_over_another_digest,
        "the signature is over digest=",
    ),
    "a valid activation signature replayed for a second activation": (
        _activated_and_approved,
        lambda s: record_activation(s.con, s.domain, s.v2, s.saved["activation"]),
        "this signature was already used",
    ),
    "an approval replayed for a later activation of the same policy": (
        _approved_then_activated_again,
        lambda s: approve_activation(s.con, s.domain, s.saved["approval"]),
        "the signature is over activation=",
    ),
    "activation by an expired key": (
        None,
        lambda s: s.activation("dan"),
        r"key SHA256:\S+ expired at",
    ),
    "activation by a revoked key": (
        None,
        lambda s: s.activation("eve"),
        r"key SHA256:\S+ was revoked at",
    ),
    "activation by a revoked person": (None, lambda s: s.activation("fay"), "fay was revoked at"),
    "activation by an unregistered key": (
        None,
        lambda s: s.activation("mallory"),
        "is not registered to anyone",
    ),
    "activation by a person without the role": (
        None,
        lambda s: s.activation("cat"),
        "cat .* does not hold policy_owner",
    ),
    "a verdict-file signature used as an approval": (
        lambda s: s.activation("ann"),
        lambda s: s.approval("bob", namespace=VERDICTS),
        "signature made for 'hitl-gate-verdicts', not for 'hitl-gate-policy'",
    ),
    "an activation signature passed off as the approval": (
        lambda s: s.activation("ann"),
        _approval_by_activation_signature,
        "the signature is over act='policy_activate', not 'policy_approve'",
    ),
    "an unsigned activation": (
        None,
        lambda s: record_activation(
            s.con, s.domain, s.v2, SignedPayload(activation_payload(DOMAIN, s.v2), "")
        ),
        "activation of .* is not signed",
    ),
    "a signature over other bytes (reason edited after signing)": (
        None,
        lambda s: record_activation(
            s.con,
            s.domain,
            s.v2,
            SignedPayload(
                activation_payload(DOMAIN, s.v2, reason="edited"),
                s.sign("ann", activation_payload(DOMAIN, s.v2, reason="signed")).signature,
            ),
        ),  # fmt: skip
        "does not match these bytes",
    ),
    "an activation signed two hours ago, kept for later": (
        None,
        lambda s: s.activation("ann", at=datetime.now(UTC) - timedelta(hours=2)),
        "more than 1:00:00 ago",
    ),
    "a halt signature used to resume": (
        lambda s: switch(s.con, s.keys, DOMAIN, halted=True),
        _halt_signatures_as_resume,
        "the signature is over act='automation_halt', not 'automation_resume'",
    ),
    "a halt signed in the policy namespace": (
        None,
        lambda s: set_halt(
            s.con,
            DOMAIN,
            halted=True,
            acts=[s.sign("ann", halt_payload(s.con, DOMAIN, halted=True, reason="x"), POLICY)],
        ),  # fmt: skip
        "signature made for 'hitl-gate-policy', not for 'hitl-gate-automation'",
    ),
    "a rollback by someone without the role": (
        lambda s: activate(s.con, s.keys, s.domain, s.v2),
        lambda s: rollback(
            s.con,
            s.domain,
            s.sign("admin", rollback_payload(DOMAIN, load_policy(s.domain.policy_path))),
        ),  # fmt: skip
        "admin .* does not hold policy_owner or operator",
    ),
    "a retention deletion signed by someone without the compliance role": (
        None,
        lambda s: authorise_retention(
            s.con, s.sign("ann", retention_payload([DOMAIN], TODAY), RETENTION), [DOMAIN], TODAY
        ),
        "ann .* does not hold compliance in consumer_credit",
    ),
    "a retention signature for another as-of day": (
        None,
        lambda s: authorise_retention(
            s.con,
            s.sign("cora", retention_payload([DOMAIN], TODAY), RETENTION),
            [DOMAIN],
            TODAY + timedelta(days=400),
        ),  # fmt: skip
        "the signature is over as_of=",
    ),
    "a retention signature replayed for a second deletion": (
        lambda s: s.saved.update(
            retention=s.sign("cora", retention_payload([DOMAIN], TODAY), RETENTION)
        )
        or authorise_retention(s.con, s.saved["retention"], [DOMAIN], TODAY),
        lambda s: authorise_retention(s.con, s.saved["retention"], [DOMAIN], TODAY),
        "this signature was already used",
    ),  # fmt: skip
    "a promotion signature over another version": (
        None,
        lambda s: promote(
            "consumer_credit_pd",
            "3",
            alias="champion",
            domain=DOMAIN,
            act=s.sign(
                "mo", promotion_payload(DOMAIN, "consumer_credit_pd", "2", alias="champion"), MODELS
            ),
            mlflow_dir=s.tmp_path / "mlflow",
            audit_db=s.tmp_path / "audit.duckdb",
        ),
        "the signature is over version='2', not '3'",
    ),  # fmt: skip
    "a promotion by a policy owner (not a model owner)": (
        None,
        lambda s: promote(
            "consumer_credit_pd",
            "2",
            alias="champion",
            domain=DOMAIN,
            act=s.sign(
                "ann",
                promotion_payload(DOMAIN, "consumer_credit_pd", "2", alias="champion"),
                MODELS,
            ),
            mlflow_dir=s.tmp_path / "mlflow",
            audit_db=s.tmp_path / "audit.duckdb",
        ),
        "ann .* does not hold model_owner",
    ),  # fmt: skip
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_with_its_reason_and_changes_nothing(
    scene: Scene, attack: str
) -> None:
    setup, act, reason = ATTACKS[attack]
    if setup is not None:
        setup(scene)
    before = (scene.rows(), policy_in_force(scene.con, scene.domain).policy.digest,
              halt_state(scene.con, DOMAIN).halted)  # fmt: skip
    with pytest.raises((PolicyControlError, PromotionError, RetentionNotAuthorised), match=reason):
        if attack.startswith("a promotion"):
            scene.con.close()  # the promotion opens the audit database itself
            act(scene)
            raise AssertionError("not refused")
        act(scene)
    if not attack.startswith("a promotion"):
        after = (scene.rows(), policy_in_force(scene.con, scene.domain).policy.digest,
                 halt_state(scene.con, DOMAIN).halted)  # fmt: skip
        assert after == before, f"{attack}: something was recorded"


def test_the_honest_path_still_works_in_the_attack_world(scene: Scene) -> None:
    """The control for the corpus: the same helpers, used honestly, are accepted."""
    s = scene
    s.activation("ann")
    s.approval("bob")
    assert policy_in_force(s.con, s.domain).policy.digest == s.v2.digest
    switch(s.con, s.keys, DOMAIN, halted=True, signers=["cat"])
    switch(s.con, s.keys, DOMAIN, halted=False, signers=["cat", "bob"])
    assert not halt_state(s.con, DOMAIN).halted


def test_a_pending_activation_never_routes(scene: Scene) -> None:
    scene.activation("ann")
    assert policy_in_force(scene.con, scene.domain).origin == "bootstrap"


def test_signing_needs_a_key_not_a_name(scene: Scene, tmp_path: Path) -> None:
    """`sign_bytes` with a path that is no key refuses (a typed name signs nothing)."""
    from hitl_gate.identity.signatures import SignatureError

    with pytest.raises(SignatureError, match="could not sign"):
        sign_bytes(b"x", tmp_path / "ann", POLICY)
    assert keyring(tmp_path).folder.is_dir()

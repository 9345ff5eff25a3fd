"""Signed human acts outside the registry (verdict files, activations, approvals, resumes...):
who signed, and whether enough *different* people did.

An act is a canonical payload (or a file's exact bytes) plus an SSH signature made for the
act's namespace. `verify_act` returns the `Signer` (person and key fingerprint) or refuses with
the reason in words; `require_distinct` is the four-eyes rule counted in keys and people, never
in typed names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hitl_gate.identity.registry import Registry, RegistryError, Signer
from hitl_gate.identity.signatures import SignatureError, claimed_key, verify


class IdentityError(ValueError):
    """A human act that is unsigned, wrongly signed or signed by someone who may not do it."""


def verify_act(
    registry: Registry,
    data: bytes,
    signature: str | None,
    namespace: str,
    *,
    at: datetime | None = None,
    domain: str | None = None,
    roles: Sequence[str] = (),
    what: str = "act",
) -> Signer:
    """The registered signer of `data`, if the signature is valid, made for `namespace` by a
    key that may sign at `at`, and its holder holds one of `roles` in `domain` (when given)."""
    if not signature or not signature.strip():
        raise IdentityError(f"{what} is not signed")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    try:
        key = claimed_key(signature)
        person, _ = registry.signer_at(key.fingerprint, moment)
        verify(data, signature, namespace, key)
    except (SignatureError, RegistryError) as error:
        raise IdentityError(f"{what}: {error}") from error
    if roles and not any(person.holds(domain or "", role) for role in roles):
        raise IdentityError(
            f"{what}: {person.person_id} ({key.fingerprint}) does not hold "
            f"{' or '.join(roles)} in {domain}"
        )
    return Signer(person_id=person.person_id, fingerprint=key.fingerprint)


def require_distinct(signers: Sequence[Signer], what: str = "this act") -> None:
    """Refuse unless every signer is a different person with a different key."""
    people = {s.person_id for s in signers}
    keys = {s.fingerprint for s in signers}
    if len(people) < len(signers) or len(keys) < len(signers):
        names = ", ".join(f"{s.person_id} ({s.fingerprint})" for s in signers)
        raise IdentityError(f"{what} needs {len(signers)} different people; got {names}")

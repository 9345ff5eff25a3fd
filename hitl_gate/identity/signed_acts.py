"""Signed operational acts (policy activation and approval, rollback, halt, resume, model
promotion, retention): the payload an actor signs, and its check against the registry.

An act is a canonical JSON payload naming what is done to what (`act`, the domain, the policy
digest or model version...) and when (`at`), signed with `ssh-keygen -Y sign` in the act's
namespace. `check_signed_act` accepts it only if the signature is valid and by a registered key
that may sign now, its holder has one of the roles, the payload says exactly what the caller is
about to do (`expected`), and it was signed recently: so a signature over another policy
digest, a signature made for verdict files, or an old one kept for later is refused, each with
its reason. Storing each act's `payload_sha256` once (the tables refuse a digest seen before)
makes a replayed signature useless too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.core.digests import canonical_json
from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import Registry, RegistryError, Signer, parse_time
from hitl_gate.identity.signatures import sign_bytes

# A signature is fresh for this long: enough to pass a payload to a colleague's terminal, too
# short to keep a signature "for later" (approvals given later sign their own payload).
MAX_ACT_AGE = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class SignedPayload:
    """The exact bytes an actor signed and the armored SSH signature over them."""

    payload: bytes
    signature: str

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


@dataclass(frozen=True)
class VerifiedAct:
    """A signed act that passed every check: who signed it, and what it says."""

    signer: Signer
    act: SignedPayload
    fields: Mapping[str, Any]

    @property
    def at(self) -> datetime:
        return parse_time(str(self.fields["at"]))


def act_payload(act: str, at: datetime | None = None, **fields: Any) -> bytes:
    """The canonical payload of act `act` (e.g. `policy_activate`) with its time, to be signed."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
    return canonical_json({**fields, "act": act, "at": moment})


def sign_payload(payload: bytes, key_path: Path, namespace: str) -> SignedPayload:
    """Sign `payload` with the key at `key_path` (or its `.pub` with the private half in
    ssh-agent) for `namespace`."""
    return SignedPayload(payload=payload, signature=sign_bytes(payload, key_path, namespace))


def _fields(act: SignedPayload, what: str) -> dict[str, Any]:
    try:
        fields = json.loads(act.payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise IdentityError(f"{what}: the signed payload is not JSON") from error
    if not isinstance(fields, dict) or canonical_json(fields) != act.payload:
        raise IdentityError(f"{what}: the signed payload is not in canonical form")
    return fields


def check_signed_act(
    registry: Registry,
    act: SignedPayload,
    namespace: str,
    *,
    expected: Mapping[str, Any],
    roles: Sequence[str],
    domain: str,
    what: str,
    now: datetime | None = None,
) -> VerifiedAct:
    """`act` verified: valid signature by a key that may sign `now`, a holder with one of
    `roles` in `domain`, a payload stating `expected`, signed within `MAX_ACT_AGE`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    signer = verify_act(
        registry,
        act.payload,
        act.signature,
        namespace,
        at=moment,
        domain=domain,
        roles=roles,
        what=what,
    )
    fields = _fields(act, what)
    for name, value in expected.items():
        if fields.get(name) != value:
            raise IdentityError(
                f"{what}: the signature is over {name}={fields.get(name)!r}, not {value!r}"
            )
    try:
        signed_at = parse_time(str(fields.get("at", "")))
    except RegistryError as error:
        raise IdentityError(f"{what}: {error}") from error
    if signed_at > moment + CLOCK_SKEW:
        raise IdentityError(f"{what}: signed for a future time {signed_at.isoformat()}")
    if moment - signed_at > MAX_ACT_AGE:
        raise IdentityError(
            f"{what}: signed at {signed_at.isoformat()}, more than {MAX_ACT_AGE} ago; "
            "sign the act again (a signature is for one act, now)"
        )
    return VerifiedAct(signer=signer, act=act, fields=fields)


def refuse_replay(
    con: duckdb.DuckDBPyConnection, table: str, act: SignedPayload, what: str
) -> None:
    """Refuse an act whose signed payload was already used for a row of `table`."""
    rows = con.execute(
        f"SELECT count(*) FROM {table} WHERE payload_sha256 = ?",  # noqa: S608 - our table names
        [act.payload_sha256],
    ).fetchall()
    if rows and rows[0][0]:
        raise IdentityError(
            f"{what}: this signature was already used (payload {act.payload_sha256[:12]}); "
            "a signed act counts once"
        )

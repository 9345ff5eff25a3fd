"""Portal credentials: an argon2id password hash and a TOTP secret, bound to a person by their
own SSH signature.

The secrets live in `<home>/secrets/portal/credentials/<person>.json` (0600). Anyone who can
write the audit database or that folder could otherwise give themselves someone's portal
identity, so enrolment is a signed act: the person signs (`ssh-keygen -Y sign`, namespace
`hitl-gate-portal`) a payload carrying the SHA-256 digests of their password hash and TOTP
secret, and the act is kept in `portal_enrolments`. At every sign-in the newest enrolment of the
person is verified again against the registry (their key must still be valid: revoking the key
revokes the portal credential) and the stored secrets must match its digests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hitl_gate.identity.acts import IdentityError, verify_act
from hitl_gate.identity.registry import PERSON_ID, Registry, Signer
from hitl_gate.identity.signatures import PORTAL
from hitl_gate.identity.signed_acts import SignedPayload, act_payload, sign_payload

ENROL_ACT = "portal_enrol"
MIN_PASSWORD = 12
_HASHER = PasswordHasher()  # argon2id with the library's current defaults


class CredentialError(ValueError):
    """A credential that is missing, unbound, or does not match its signed enrolment."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Credential:
    """A person's portal secrets: the argon2id hash of their password and their TOTP secret."""

    person_id: str
    password_hash: str
    totp_secret: str

    @classmethod
    def new(cls, person_id: str, password: str) -> Credential:
        if PERSON_ID.fullmatch(person_id) is None:
            raise CredentialError(f"not a person id: {person_id!r}")
        if len(password) < MIN_PASSWORD:
            raise CredentialError(f"a portal password needs at least {MIN_PASSWORD} characters")
        return cls(person_id, _HASHER.hash(password), pyotp.random_base32())

    def digests(self) -> dict[str, str]:
        return {
            "password_hash_sha256": _sha(self.password_hash),
            "totp_secret_sha256": _sha(self.totp_secret),
        }

    def password_ok(self, password: str) -> bool:
        try:
            return bool(_HASHER.verify(self.password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def totp_step(self, code: str, at: datetime) -> int | None:
        """The 30-second step whose code `code` is, if it is `at`'s or the step either side
        (clock drift); None for any other code. A step is accepted once (`signin`)."""
        code = code.strip()
        if not (code.isdigit() and len(code) == 6):
            return None
        totp = pyotp.TOTP(self.totp_secret)
        now = totp.timecode(at)
        for step in (now, now - 1, now + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def provisioning_uri(self) -> str:
        return pyotp.TOTP(self.totp_secret).provisioning_uri(
            name=self.person_id, issuer_name="hitl-gate portal"
        )


def credential_path(secrets_dir: Path, person_id: str) -> Path:
    if PERSON_ID.fullmatch(person_id) is None:
        raise CredentialError(f"not a person id: {person_id!r}")
    return secrets_dir / "portal" / "credentials" / f"{person_id}.json"


def save_credential(secrets_dir: Path, credential: Credential) -> Path:
    """Write the credential file (0600, folders 0700), replacing an earlier one atomically."""
    path = credential_path(secrets_dir, credential.person_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(credential.__dict__, handle)
    temporary.replace(path)
    return path


def load_credential(secrets_dir: Path, person_id: str) -> Credential | None:
    path = credential_path(secrets_dir, person_id)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Credential(str(raw["person_id"]), str(raw["password_hash"]), str(raw["totp_secret"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CredentialError(f"{person_id}: unreadable portal credential ({error})") from error


def enrolment_payload(credential: Credential, at: datetime | None = None) -> bytes:
    """The canonical payload the person signs to bind this credential to themselves."""
    return act_payload(ENROL_ACT, at=at, person_id=credential.person_id, **credential.digests())


def sign_enrolment(
    credential: Credential, key_path: Path, at: datetime | None = None
) -> SignedPayload:
    """The person's signature (their registered SSH key) over the enrolment payload."""
    return sign_payload(enrolment_payload(credential, at), key_path, PORTAL)


def record_enrolment(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    person_id: str,
    act: SignedPayload,
    now: datetime | None = None,
) -> Signer:
    """Check the enrolment is signed by `person_id`'s own valid key, then keep it."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    signer = _bound_signer(registry, person_id, act, moment)
    con.execute(
        "INSERT INTO portal_enrolments VALUES (?, ?, ?, ?, ?, ?)",
        [act.payload_sha256, person_id, act.text, act.signature, signer.fingerprint, moment],
    )
    return signer


def _bound_signer(registry: Registry, person_id: str, act: SignedPayload, at: datetime) -> Signer:
    what = f"portal enrolment of {person_id}"
    try:
        signer = verify_act(registry, act.payload, act.signature, PORTAL, at=at, what=what)
    except IdentityError as error:
        raise CredentialError(str(error)) from error
    fields = json.loads(act.payload)
    if signer.person_id != person_id or fields.get("person_id") != person_id:
        raise CredentialError(
            f"{what}: signed by {signer.person_id} ({signer.fingerprint}); a credential is "
            "bound only by its own holder's key"
        )
    if fields.get("act") != ENROL_ACT:
        raise CredentialError(f"{what}: the signed payload is not a portal enrolment")
    return signer


def verified_binding(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    credential: Credential,
    at: datetime,
) -> Signer:
    """The person's key that binds `credential` (newest enrolment, verified now), or refuse."""
    row = con.execute(
        "SELECT payload, signature FROM portal_enrolments WHERE person_id = ? "
        "ORDER BY recorded_at DESC, enrolment_id LIMIT 1",
        [credential.person_id],
    ).fetchall()
    if not row:
        raise CredentialError(f"{credential.person_id} has no signed portal enrolment")
    act = SignedPayload(payload=str(row[0][0]).encode("utf-8"), signature=str(row[0][1]))
    signer = _bound_signer(registry, credential.person_id, act, at)
    fields = json.loads(act.payload)
    for name, digest in credential.digests().items():
        if fields.get(name) != digest:
            raise CredentialError(
                f"{credential.person_id}: the stored portal credential is not the one their "
                "signed enrolment names (replaced outside enrolment?)"
            )
    return signer

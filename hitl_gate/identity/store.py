"""The `people_acts` log in the audit database: append one signed act, replay them all.

Replaying checks every act's signature again with OpenSSH, so a row inserted or edited by
someone with write access to the database (a forged administrator, a key added by SQL) makes
the registry refuse to load, naming the act, instead of quietly granting authority. The audit
seal covers the table too; this check does not depend on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.core.digests import canonical_json
from hitl_gate.identity.registry import Registry, RegistryError
from hitl_gate.identity.signatures import PEOPLE, SignatureError, claimed_key, sign_bytes, verify


@dataclass(frozen=True)
class SignedAct:
    """One act as stored: its canonical payload bytes and the signature over them."""

    payload: bytes
    signature: str

    @property
    def act_id(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    def fields(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.payload)
        return loaded


def draft_act(registry: Registry, kind: str, at: datetime | None = None, **fields: Any) -> bytes:
    """The canonical payload of the next act (naming the registry's last act), to be signed."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
    return canonical_json({**fields, "kind": kind, "at": moment, "previous": registry.head})


def sign_act(payload: bytes, key_path: Path) -> SignedAct:
    """Sign a drafted act with an administrator's SSH key (`ssh-keygen -Y sign`)."""
    return SignedAct(payload=payload, signature=sign_bytes(payload, key_path, PEOPLE))


def replay(
    registry: Registry, act: SignedAct, trusted_admins: Collection[str] = ()
) -> tuple[Registry, str]:
    """The registry after `act`, with the signer's fingerprint; refuses a bad signature."""
    try:
        key = claimed_key(act.signature)
        verify(act.payload, act.signature, PEOPLE, key)
        fields = act.fields()
    except (SignatureError, ValueError) as error:
        raise RegistryError(f"act {act.act_id[:12]}: {error}") from error
    if canonical_json(fields) != act.payload:
        raise RegistryError(f"act {act.act_id[:12]}: payload is not in canonical form")
    if registry.acts == 0 and trusted_admins and key.fingerprint not in trusted_admins:
        raise RegistryError(
            f"the first administrator's key {key.fingerprint} is not one the deployment pins"
        )
    return registry.apply(fields, key.fingerprint).after(act.act_id), key.fingerprint


def load_registry(con: duckdb.DuckDBPyConnection, trusted_admins: Collection[str] = ()) -> Registry:
    """Replay `people_acts` in order, verifying each act; `RegistryError` names a bad one."""
    rows = con.execute(
        "SELECT seq, act_id, payload, signature FROM people_acts ORDER BY seq"
    ).fetchall()
    registry = Registry()
    for expected_seq, (seq, act_id, payload, signature) in enumerate(rows, start=1):
        act = SignedAct(payload=str(payload).encode("utf-8"), signature=str(signature))
        if seq != expected_seq or act.act_id != act_id:
            raise RegistryError(f"people_acts seq {seq}: act id or sequence altered")
        try:
            registry, _ = replay(registry, act, trusted_admins)
        except RegistryError as error:
            raise RegistryError(f"people_acts seq {seq}: {error}") from error
    return registry


def append_act(
    con: duckdb.DuckDBPyConnection, act: SignedAct, trusted_admins: Collection[str] = ()
) -> Registry:
    """Check `act` against the registry as stored and append it (one transaction)."""
    con.execute("BEGIN TRANSACTION")
    try:
        registry = load_registry(con, trusted_admins)
        updated, fingerprint = replay(registry, act, trusted_admins)
        fields: Mapping[str, Any] = act.fields()
        owner = updated.key_owner(fingerprint)
        con.execute(
            "INSERT INTO people_acts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                registry.acts + 1,
                act.act_id,
                fields["kind"],
                str(fields.get("person_id", "")),
                act.payload.decode("utf-8"),
                act.signature,
                fingerprint,
                owner[0].person_id if owner else "",
                datetime.now(UTC),
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return updated

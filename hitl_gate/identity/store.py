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
from hitl_gate.identity.signatures import (
    PEOPLE,
    SignatureError,
    claimed_key,
    preverify,
    sign_bytes,
    verify,
)


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
    """Replay `people_acts` in order, verifying each act; `RegistryError` names a bad one.

    Every act is verified from the rows on every load, but a process does each piece of work
    once: the registry replayed from the longest run of first acts this process already
    replayed, byte for byte (`_REPLAYED`, keyed by a running SHA-256 over every act's seq,
    id, payload and signature, and by `trusted_admins`), is taken as the start, and the
    signatures of the acts still to replay are checked by concurrent OpenSSH processes first
    (`signatures.preverify`). Both caches live in this process's memory, never in the database,
    and hold only what was verified here; an act edited, inserted or removed anywhere changes
    the running digest from that act on, so it is replayed and verified again.
    """
    rows = con.execute(
        "SELECT seq, act_id, payload, signature FROM people_acts ORDER BY seq"
    ).fetchall()
    admins = frozenset(trusted_admins)
    acts: list[SignedAct] = []
    prefixes: list[str] = []
    running = hashlib.sha256()
    for expected_seq, (seq, act_id, payload, signature) in enumerate(rows, start=1):
        act = SignedAct(payload=str(payload).encode("utf-8"), signature=str(signature))
        if seq != expected_seq or act.act_id != act_id:
            raise RegistryError(f"people_acts seq {seq}: act id or sequence altered")
        for part in (str(seq).encode(), act.act_id.encode(), act.payload, act.signature.encode()):
            running.update(len(part).to_bytes(8, "big") + part)
        acts.append(act)
        prefixes.append(running.hexdigest())
    done, registry = 0, Registry()
    for count in range(len(acts), 0, -1):
        cached = _REPLAYED.get((admins, prefixes[count - 1]))
        if cached is not None:
            done, registry = count, cached
            break
    _preverify(acts[done:])
    for seq, act in enumerate(acts[done:], start=done + 1):
        try:
            registry, _ = replay(registry, act, trusted_admins)
        except RegistryError as error:
            raise RegistryError(f"people_acts seq {seq}: {error}") from error
    if acts:
        if len(_REPLAYED) >= REPLAYED_LIMIT:
            _REPLAYED.clear()
        _REPLAYED[(admins, prefixes[-1])] = registry
    return registry


# Registries this process replayed and verified, by (trusted admins, running digest of the acts
# replayed): `load_registry` starts from the longest such prefix of the rows it reads.
_REPLAYED: dict[tuple[frozenset[str], str], Registry] = {}
REPLAYED_LIMIT = 64


def _preverify(acts: list[SignedAct]) -> None:
    """The acts' signatures checked concurrently (a speed-up: `replay` still verifies each)."""
    items = []
    for act in acts:
        try:
            items.append((act.payload, act.signature, PEOPLE, claimed_key(act.signature)))
        except SignatureError:
            continue  # `replay` refuses it with its message
    preverify(items)


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

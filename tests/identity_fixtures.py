"""Real SSH keys (made with `ssh-keygen`) and a real people registry for tests.

`Keyring` makes one ed25519 key pair per name under a temporary folder (no passphrase) and
signs registry acts with them, so tests drive exactly what a deployment does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from hitl_gate.identity.registry import Registry
from hitl_gate.identity.signatures import new_key_pair
from hitl_gate.identity.store import SignedAct, append_act, draft_act, load_registry, sign_act


@dataclass
class Keyring:
    """Key pairs by name in `folder`: `private(name)`, `public_line(name)`."""

    folder: Path
    made: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, folder: Path) -> Keyring:
        """The keyring of `folder` (made if missing), knowing the ed25519 keys made there
        before (a shared world's, a demo home's), by name."""
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, {p.name.removesuffix("_ed25519"): p for p in folder.glob("*_ed25519")})

    def private(self, name: str, key_type: str = "ed25519") -> Path:
        if name not in self.made:
            self.made[name] = new_key_pair(self.folder / f"{name}_{key_type}", name, key_type)
        return self.made[name]

    def public_line(self, name: str) -> str:
        return Path(f"{self.private(name)}.pub").read_text(encoding="ascii").strip()

    def fingerprint(self, name: str) -> str:
        from hitl_gate.identity.keys import parse_public_key

        return parse_public_key(self.public_line(name)).fingerprint

    def sign_act(self, payload: bytes, signer: str) -> SignedAct:
        """`payload` signed with `signer`'s key (`tests.key_pool.PooledKeyring` remembers)."""
        return sign_act(payload, self.private(signer))


def registry_act(
    con: duckdb.DuckDBPyConnection,
    keyring: Keyring,
    signer: str,
    kind: str,
    at: datetime | None = None,
    **fields: object,
) -> Registry:
    """Draft, sign (with `signer`'s key) and append one registry act; the new registry."""
    payload = draft_act(load_registry(con), kind, at=at, **fields)
    return append_act(con, keyring.sign_act(payload, signer))


def add_person(
    con: duckdb.DuckDBPyConnection,
    keys: Keyring,
    person_id: str,
    grants: list[str],
    signer: str = "admin",
    key_name: str | None = None,
    at: datetime | None = None,
) -> Registry:
    """Register `person_id` with the key named `key_name` (default: the person's own), as of
    `at` (default: now)."""
    return registry_act(
        con,
        keys,
        signer,
        "add_person",
        at=at,
        person_id=person_id,
        display_name=person_id.title(),
        grants=grants,
        keys=[{"public_key": keys.public_line(key_name or person_id)}],
    )


def bootstrap(
    con: duckdb.DuckDBPyConnection, keys: Keyring, at: datetime | None = None
) -> Registry:
    """The first administrator, `admin`, signing their own addition (as of `at`)."""
    return add_person(con, keys, "admin", ["*:admin"], at=at)


def forge_self_promotion(
    con: duckdb.DuckDBPyConnection, registry: Registry, keys: Keyring, recorded_signer: str
) -> None:
    """The insider's forgery: `ana` signs her own promotion to administrator and the row goes
    in by SQL as act 4, recorded under `recorded_signer`'s fingerprint."""
    forged = draft_act(registry, "set_grants", person_id="ana", grants=["*:admin"])
    act = sign_act(forged, keys.private("ana"))
    con.execute(
        "INSERT INTO people_acts VALUES (4, ?, 'set_grants', 'ana', ?, ?, ?, 'admin', now())",
        [act.act_id, forged.decode(), act.signature, keys.fingerprint(recorded_signer)],
    )

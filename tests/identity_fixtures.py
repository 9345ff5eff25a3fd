"""Real SSH keys (made with `ssh-keygen`) and a real people registry for tests.

`Keyring` makes one ed25519 key pair per name under a temporary folder (no passphrase) and
signs registry acts with them, so tests drive exactly what a deployment does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from hitl_gate.identity.registry import Registry
from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act


@dataclass
class Keyring:
    """Key pairs by name in `folder`: `private(name)`, `public_line(name)`."""

    folder: Path
    made: dict[str, Path] = field(default_factory=dict)

    def private(self, name: str, key_type: str = "ed25519") -> Path:
        if name not in self.made:
            path = self.folder / f"{name}_{key_type}"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(path)],
                check=True,
                stdin=subprocess.DEVNULL,
            )
            self.made[name] = path
        return self.made[name]

    def public_line(self, name: str) -> str:
        return Path(f"{self.private(name)}.pub").read_text(encoding="ascii").strip()

    def fingerprint(self, name: str) -> str:
        from hitl_gate.identity.keys import parse_public_key

        return parse_public_key(self.public_line(name)).fingerprint


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
    return append_act(con, sign_act(payload, keyring.private(signer)))


def add_person(
    con: duckdb.DuckDBPyConnection,
    keys: Keyring,
    person_id: str,
    grants: list[str],
    signer: str = "admin",
    key_name: str | None = None,
) -> Registry:
    """Register `person_id` with the key named `key_name` (default: the person's own)."""
    return registry_act(
        con,
        keys,
        signer,
        "add_person",
        person_id=person_id,
        display_name=person_id.title(),
        grants=grants,
        keys=[{"public_key": keys.public_line(key_name or person_id)}],
    )


def bootstrap(con: duckdb.DuckDBPyConnection, keys: Keyring) -> Registry:
    """The first administrator, `admin`, signing their own addition."""
    return add_person(con, keys, "admin", ["*:admin"])

"""The Ed25519 key that signs audit checkpoints: injected by the deployment or a per-home key file.

The private key never lives in the repository: a deployment injects it as
`HITL_AUDIT_SIGNING_KEY` (hex of the 32-byte seed, read by the `AuditDatabase` resource through
`dagster.EnvVar`) or points `key_file` at its secret mount; a laptop install gets one generated
on first use under `<home>/secrets` with mode 0600 (`hitl_gate.core.key_files`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hitl_gate.core.key_files import load_or_create_key
from hitl_gate.core.settings import AUDIT_KEY_ENV

KEY_ENV = AUDIT_KEY_ENV
KEY_FILE = "audit_ed25519.key"
SEED_BYTES = 32


def load_or_create_signing_key(key_file: Path, seed_hex: str | None = None) -> Ed25519PrivateKey:
    """The checkpoint signing key: `seed_hex` (the injected secret) if given, else `key_file`.

    A deployment's `AuditDatabase` resource hands in `HITL_AUDIT_SIGNING_KEY` through
    `dagster.EnvVar`; without it the seed is read from (or created once in) `key_file`.
    """
    seed = load_or_create_key(
        key_file, injected_hex=seed_hex, injected_from=KEY_ENV, size=SEED_BYTES
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Raw public key bytes as hex (what checkpoints record and `verify` compares)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))

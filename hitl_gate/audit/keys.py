"""The Ed25519 key that signs audit checkpoints: from the environment or a per-home key file.

The private key never lives in the repository: a deployment injects it as
`HITL_AUDIT_SIGNING_KEY` (hex of the 32-byte seed) or points `key_file` at its secret mount; a
laptop install gets one generated on first use under `<home>/secrets` with mode 0600.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_ENV = "HITL_AUDIT_SIGNING_KEY"
KEY_FILE = "audit_ed25519.key"
SEED_BYTES = 32


def load_or_create_signing_key(key_file: Path) -> Ed25519PrivateKey:
    """The checkpoint signing key: `HITL_AUDIT_SIGNING_KEY` if set, else `key_file` (created once).

    O_EXCL creation means two processes starting together cannot each write a different key.
    """
    env_value = os.environ.get(KEY_ENV, "").strip()
    if env_value:
        try:
            seed = bytes.fromhex(env_value)
        except ValueError as exc:
            raise ValueError(f"{KEY_ENV} is not valid hex") from exc
        return _from_seed(seed, KEY_ENV)
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _from_seed(key_file.read_bytes(), str(key_file))
    seed = secrets.token_bytes(SEED_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(seed)
        handle.flush()
        os.fsync(handle.fileno())
    return _from_seed(seed, str(key_file))


def _from_seed(seed: bytes, where: str) -> Ed25519PrivateKey:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"{where}: expected a {SEED_BYTES}-byte Ed25519 seed, found {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Raw public key bytes as hex (what checkpoints record and `verify` compares)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))

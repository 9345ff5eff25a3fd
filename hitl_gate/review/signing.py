"""HMAC signing of review manifests, so a returned verdict file can be tied to what we sent.

Reviewers work in ordinary spreadsheets outside the pipeline; the manifest written beside each
batch is the pipeline's own record of what was sent. Signing it means a manifest edited by hand
(for example to add a case or change a due time) is refused when verdicts come back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

KEY_ENV = "HITL_REVIEW_KEY"
KEY_FILE = "review_hmac.key"
KEY_BYTES = 32
MIN_ENV_KEY_BYTES = 16  # a shorter key is a misconfiguration, not a choice


def load_or_create_key(secrets_dir: Path) -> bytes:
    """The review signing key: `HITL_REVIEW_KEY` (hex) if set, else a per-home key file.

    The file is created on first use with 32 random bytes and mode 0600, so a laptop install
    works without setup while a deployment can inject the key from its secret store.
    """
    env_value = os.environ.get(KEY_ENV, "").strip()
    if env_value:
        try:
            key = bytes.fromhex(env_value)
        except ValueError as exc:
            raise ValueError(f"{KEY_ENV} is not valid hex") from exc
        if len(key) < MIN_ENV_KEY_BYTES:
            raise ValueError(f"{KEY_ENV} must hold at least {MIN_ENV_KEY_BYTES} bytes")
        return key

    path = secrets_dir / KEY_FILE
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: expected {KEY_BYTES} bytes, found {len(key)}") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


def canonical_json(payload: Any) -> bytes:
    """The one byte form of a JSON payload that is signed and hashed (key order is irrelevant)."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sign(payload: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of the canonical JSON of `payload`."""
    return hmac.new(key, canonical_json(payload), hashlib.sha256).hexdigest()


def verify(payload: dict[str, Any], signature: str, key: bytes) -> bool:
    """Whether `signature` was made by `key` over `payload`; constant-time, never raises."""
    if not isinstance(signature, str):
        return False
    try:
        expected = sign(payload, key)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))

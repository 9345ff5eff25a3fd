"""Secret keys: injected by the deployment as hex, else a per-home key file created once.

Both signing keys (the audit checkpoints' Ed25519 seed, the review manifests' HMAC key) follow
the same rule: a deployment injects the key from its secret store (a resource backed by
`dagster.EnvVar` hands the hex in), a laptop install gets random bytes written on first use
with mode 0600 inside a 0700 folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_key(
    key_file: Path,
    *,
    injected_hex: str | None,
    injected_from: str,
    size: int,
    min_injected_size: int | None = None,
) -> bytes:
    """The key: `injected_hex` if given, else `key_file` (created with `size` random bytes).

    `injected_from` names where the hex came from (the variable) for error messages; an injected
    key must hold `size` bytes, or at least `min_injected_size` when given. O_EXCL creation means
    two processes starting together cannot each write a different key.
    """
    text = (injected_hex or "").strip()
    if text:
        try:
            key = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"{injected_from} is not valid hex") from exc
        if min_injected_size is not None and len(key) < min_injected_size:
            raise ValueError(f"{injected_from} must hold at least {min_injected_size} bytes")
        if min_injected_size is None and len(key) != size:
            raise ValueError(f"{injected_from}: expected {size} bytes, found {len(key)}")
        return key
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = key_file.read_bytes()
        if len(key) != size:
            raise ValueError(f"{key_file}: expected {size} bytes, found {len(key)}") from None
        return key
    key = secrets.token_bytes(size)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key

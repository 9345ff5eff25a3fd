"""HMAC signing of review manifests, so a returned verdict file can be tied to what we sent.

Reviewers work in ordinary spreadsheets outside the pipeline; the manifest written beside each
batch is the pipeline's own record of what was sent. Signing it means a manifest edited by hand
(for example to add a case or change a due time) is refused when verdicts come back.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from hitl_gate.core.digests import canonical_json
from hitl_gate.core.key_files import load_or_create_key as load_or_create_key_file
from hitl_gate.core.settings import REVIEW_KEY_ENV

KEY_ENV = REVIEW_KEY_ENV
KEY_FILE = "review_hmac.key"
KEY_BYTES = 32
MIN_ENV_KEY_BYTES = 16  # a shorter key is a misconfiguration, not a choice


def load_or_create_key(secrets_dir: Path, key_hex: str | None = None) -> bytes:
    """The review signing key: `key_hex` (the injected secret) if given, else a per-home key file.

    The `ReviewWorkspace` resource hands in `HITL_REVIEW_KEY` through `dagster.EnvVar`; without
    it, the file is created on first use with 32 random bytes and mode 0600, so a laptop install
    works without setup.
    """
    return load_or_create_key_file(
        secrets_dir / KEY_FILE,
        injected_hex=key_hex,
        injected_from=KEY_ENV,
        size=KEY_BYTES,
        min_injected_size=MIN_ENV_KEY_BYTES,
    )


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

"""The checkpoint signer of an installation, and the Ed25519 public-key helpers.

The signer is chosen by `AuditKeySettings` (docs/key_custody.md): by default an Ed25519 key
inside a PKCS#11 token (`hitl_gate.audit.signer`; SoftHSM2 under `<home>/secrets/softhsm` on a
laptop), which never leaves the token. The legacy signer, an Ed25519 seed injected as
`HITL_AUDIT_SIGNING_KEY` or kept in a per-home key file (`hitl_gate.core.key_files`), is
used only when configured explicitly (`HITL_AUDIT_SIGNER=key_file`) and by tests of old
homes: a key file is readable by whoever can read the home.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hitl_gate.audit.signer import CheckpointSigner, Pkcs11Signer, TokenConfig
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.key_files import load_or_create_key
from hitl_gate.core.settings import AUDIT_KEY_ENV, AuditKeySettings

KEY_ENV = AUDIT_KEY_ENV
KEY_FILE = "audit_ed25519.key"
SEED_BYTES = 32
SOFTHSM_DIR = "softhsm"


def load_or_create_signing_key(key_file: Path, seed_hex: str | None = None) -> Ed25519PrivateKey:
    """The legacy signing key: `seed_hex` (the injected secret) if given, else `key_file`."""
    seed = load_or_create_key(
        key_file, injected_hex=seed_hex, injected_from=KEY_ENV, size=SEED_BYTES
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def token_config(paths: HitlPaths, keys: AuditKeySettings, pin: str | None = None) -> TokenConfig:
    """Where the installation's token key is: SoftHSM2 files under the token folder (default
    `<home>/secrets/softhsm`) when the module is SoftHSM2's, else the configured device."""
    softhsm = "softhsm" in Path(keys.pkcs11_module).name.lower()
    return TokenConfig(
        module=keys.pkcs11_module,
        token_label=keys.token_label,
        key_label=keys.key_label,
        pin=pin or None,
        softhsm_dir=(keys.token_dir or paths.secrets_dir / SOFTHSM_DIR) if softhsm else None,
        create_key=softhsm,
    )


def checkpoint_signer(
    paths: HitlPaths,
    keys: AuditKeySettings,
    *,
    pin: str | None = None,
    seed_hex: str | None = None,
) -> CheckpointSigner:
    """The installation's signer: the token (PIN `pin`, a secret the edge read), or the
    legacy key file / injected seed `seed_hex` when `keys.signer` is `key_file`."""
    if keys.signer == "key_file":
        return load_or_create_signing_key(paths.audit_key_file, seed_hex)
    return Pkcs11Signer(token_config(paths, keys, pin))


def public_key_hex(key: CheckpointSigner | Ed25519PublicKey) -> str:
    """Raw public key bytes as hex (what checkpoints record and `verify` compares)."""
    public = key if isinstance(key, Ed25519PublicKey) else key.public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(value: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))

"""The boundary that signs checkpoints: a PKCS#11 token holding a key that never leaves it.

A `CheckpointSigner` has two operations, `sign(message) -> signature` and `public_key()`; the
checkpoint code (`seal`, `bundle`) needs nothing else, so where the private key lives is a
matter of configuration:
- `Pkcs11Signer`: an Ed25519 key (PKCS#11 `CKM_EDDSA`) inside a token, generated there with
  `CKA_EXTRACTABLE` false and `CKA_SENSITIVE` true, so no one (the pipeline, the database
  writer, the OS account holding the PIN) can read it out; they can at most ask the token to
  sign. On a laptop the token is SoftHSM2's, under `token_dir` with a `softhsm2.conf` of its
  own (`ensure_softhsm_token`); a real HSM or a cloud KMS with a PKCS#11 module is the same
  code with another `module`, token label, key label and PIN (docs/key_custody.md).
- an `Ed25519PrivateKey` from `hitl_gate.audit.keys` (the legacy per-home key file), which has
  the same two methods: kept for explicit configuration and for old homes' tests only.

Signatures are plain Ed25519 (64 bytes), so checkpoints, bundles and `verify` are the same
whichever signer made them.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hitl_gate.core.file_lock import exclusive_lock
from hitl_gate.core.key_files import load_or_create_key

ED25519_OID = "1.3.101.112"
SOFTHSM_CONF = "softhsm2.conf"
PIN_FILE = "user.pin"
SO_PIN_FILE = "so.pin"
PIN_BYTES = 16
_SOFTHSM_CONF_ENV = "SOFTHSM2_CONF"


class CheckpointSigner(Protocol):
    """Signs checkpoint and bundle messages; `Ed25519PrivateKey` satisfies it too."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


class SignerError(RuntimeError):
    """The token cannot be reached or holds no usable key; the message names which."""


@dataclass(frozen=True)
class TokenConfig:
    """Where the checkpoint key lives in a PKCS#11 token.

    `module` is the vendor's PKCS#11 library; `softhsm_dir`, when set, is a SoftHSM2 token
    folder this process configures (and initialises on first use); `pin` is the user PIN
    (None: the generated one in `softhsm_dir`, laptop only). `create_key` lets the first use
    generate the key pair in the token; a production HSM's key is made by its custodian.
    """

    module: str
    token_label: str
    key_label: str
    pin: str | None = None
    softhsm_dir: Path | None = None
    create_key: bool = True


class Pkcs11Signer:
    """An Ed25519 key inside a PKCS#11 token: signs in the token, never exports the key."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._public: Ed25519PublicKey | None = None

    def public_key(self) -> Ed25519PublicKey:
        if self._public is None:
            with self._session() as session:
                self._public = _ed25519_public(_public_object(session, self.config))
        return self._public

    def sign(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism, ObjectClass

        with self._session() as session:
            key = _find(session, ObjectClass.PRIVATE_KEY, self.config)
            signature: bytes = key.sign(data, mechanism=Mechanism.EDDSA)
        return signature

    @contextmanager
    def _session(self) -> Iterator[Any]:
        config = self.config
        pin = config.pin
        if config.softhsm_dir is not None:
            pin = ensure_softhsm_token(config.softhsm_dir, config.token_label, pin)
        if not pin:
            raise SignerError(f"token {config.token_label!r}: no PIN configured")
        # Across processes (a multiprocess run's steps), the token folder's lock makes the
        # first uses generate one key pair, not one each under the same label.
        across = (
            exclusive_lock(config.softhsm_dir / ".lock") if config.softhsm_dir else nullcontext()
        )
        with _LIBRARY_LOCK, across:
            library = _library(config.module, config.softhsm_dir)
            try:
                token = library.get_token(token_label=config.token_label)
            except Exception as exc:  # NoSuchToken, MultipleTokensReturned
                raise SignerError(
                    f"{config.module}: token {config.token_label!r} not found ({exc!r})"
                ) from exc
            with token.open(rw=True, user_pin=pin) as session:
                if config.create_key:
                    _ensure_key_pair(session, config)
                yield session


def _find(session: Any, object_class: Any, config: TokenConfig) -> Any:
    try:
        return session.get_key(object_class=object_class, label=config.key_label)
    except Exception as exc:  # NoSuchKey, MultipleObjectsReturned
        raise SignerError(
            f"token {config.token_label!r}: no single {object_class.name} labelled "
            f"{config.key_label!r} ({exc!r})"
        ) from exc


def _public_object(session: Any, config: TokenConfig) -> Any:
    from pkcs11 import ObjectClass

    return _find(session, ObjectClass.PUBLIC_KEY, config)


def _ed25519_public(public: Any) -> Ed25519PublicKey:
    """The raw key from `CKA_EC_POINT` (a DER OCTET STRING of 32 bytes, or the bare bytes)."""
    from pkcs11 import Attribute

    point = bytes(public[Attribute.EC_POINT])
    raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
    return Ed25519PublicKey.from_public_bytes(raw)


def _ensure_key_pair(session: Any, config: TokenConfig) -> None:
    """Generate the Ed25519 pair in the token unless a key with the label exists.

    The private half is a token object that is sensitive and not extractable: the token
    refuses to return its value or to wrap it out, whoever asks.
    """
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    if list(session.get_objects({Attribute.LABEL: config.key_label})):
        return
    params = session.create_domain_parameters(
        KeyType.EC_EDWARDS,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
        local=True,
    )
    params.generate_keypair(
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        store=True,
        label=config.key_label,
        private_template={
            Attribute.EXTRACTABLE: False,
            Attribute.SENSITIVE: True,
            Attribute.PRIVATE: True,
            Attribute.SIGN: True,
        },
    )


# The PKCS#11 library is process-wide state (C_Initialize once per process); SoftHSM2 reads its
# configuration file from SOFTHSM2_CONF at that moment. One lock serialises token use; a
# different token folder (another home in the same process: tests) or a forked child (PKCS#11
# leaves a library initialised before fork undefined in the child) re-initialises the library.
_LIBRARY_LOCK = threading.RLock()
_LOADED_CONF: dict[str, tuple[str, int]] = {}


def _library(module: str, softhsm_dir: Path | None) -> Any:
    import pkcs11

    wanted = str(softhsm_dir / SOFTHSM_CONF) if softhsm_dir is not None else ""
    try:
        library = pkcs11.lib(module)
    except Exception as exc:
        raise SignerError(f"cannot load the PKCS#11 module {module} ({exc})") from exc
    if _LOADED_CONF.get(module) != (wanted, os.getpid()):
        if wanted:
            os.environ[_SOFTHSM_CONF_ENV] = wanted
        library.reinitialize()
        _LOADED_CONF[module] = (wanted, os.getpid())
    return library


def ensure_softhsm_token(token_dir: Path, label: str, pin: str | None) -> str:
    """A SoftHSM2 token labelled `label` in `token_dir` (created once); return the user PIN.

    The folder gets its own `softhsm2.conf` (so the token never lands in the system-wide
    store) and mode 0700. Without `pin`, a random PIN is generated into `user.pin` (0600):
    the laptop default, where the OS account running hitl-gate is the key's custodian. The
    security officer PIN goes to `so.pin`. A file lock makes concurrent first uses create one
    token, not two with the same label.
    """
    token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = token_dir / SOFTHSM_CONF
    store = token_dir / "tokens"
    with exclusive_lock(token_dir / ".lock"):
        user_pin = pin or _generated_pin(token_dir / PIN_FILE)
        store.mkdir(exist_ok=True, mode=0o700)
        text = (
            f"directories.tokendir = {store}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n"
        )
        if not conf.exists() or conf.read_text(encoding="utf-8") != text:  # new, or home moved
            tmp = conf.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, conf)
        if not any(store.iterdir()):
            _init_token(conf, label, user_pin, _generated_pin(token_dir / SO_PIN_FILE))
    return user_pin


def _generated_pin(path: Path) -> str:
    return load_or_create_key(path, injected_hex=None, injected_from="", size=PIN_BYTES).hex()


def _init_token(conf: Path, label: str, pin: str, so_pin: str) -> None:
    command = [
        "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
        "--so-pin", so_pin,
    ]  # fmt: skip
    try:
        subprocess.run(
            command,
            env={**os.environ, _SOFTHSM_CONF_ENV: str(conf)},
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError as exc:
        raise SignerError("softhsm2-util is not installed (package softhsm2)") from exc
    except subprocess.CalledProcessError as exc:
        raise SignerError(f"softhsm2-util --init-token failed: {exc.stderr.strip()}") from exc
    with _LIBRARY_LOCK:  # a loaded library must see the new token: re-read on next use
        _LOADED_CONF.clear()

"""Batch files only their assignee can open: owner-only permissions, and age encryption.

Folders are created 0700 and files 0600, so on the pipeline's machine no other account reads a
batch. When the domain asks for it (`encryption.enabled` in review.yaml), the cases files are
also encrypted in the age format (`pyrage`, the maintained Rust implementation; no home-made
crypto) to the assignee's registered SSH keys (ed25519 or RSA, which age accepts as
recipients) and to the pipeline's own age key (`<secrets>/review_age.key`), which lets a
supervisor's reassignment re-encrypt a batch to the new assignee. Another reviewer holds
neither key, so a copied or synchronised batch stays unreadable to them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
from pyrage import ssh, x25519

AGE_SUFFIX = ".age"
PIPELINE_AGE_KEY = "review_age.key"
FOLDER_MODE = 0o700
FILE_MODE = 0o600


class SealingError(ValueError):
    """A batch that cannot be encrypted or decrypted as configured."""


def private_folder(path: Path) -> Path:
    """`path` (and missing parents) as a folder only its owner may enter."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    path.chmod(FOLDER_MODE)
    return path


def restrict_files(folder: Path) -> None:
    """Owner-only read/write on every file directly in `folder`."""
    for entry in folder.iterdir():
        if entry.is_file():
            entry.chmod(FILE_MODE)


def pipeline_identity(secrets_dir: Path) -> x25519.Identity:
    """The pipeline's age key, made once (mode 0600) under the secrets folder."""
    path = secrets_dir / PIPELINE_AGE_KEY
    private_folder(secrets_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return x25519.Identity.from_str(path.read_text(encoding="ascii").strip())
    identity = x25519.Identity.generate()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(str(identity) + "\n")
    return identity


def recipients(ssh_keys: Sequence[str], pipeline: str | None) -> list[object]:
    """age recipients for the assignee's OpenSSH public keys and the pipeline's key."""
    found: list[object] = []
    for line in ssh_keys:
        try:
            found.append(ssh.Recipient.from_str(line))
        except pyrage.RecipientError as error:
            raise SealingError(f"age cannot encrypt to key {line.split()[0]}: {error}") from error
    if not found:
        raise SealingError("the assignee has no key age can encrypt to (ed25519 or RSA)")
    if pipeline:
        found.append(x25519.Recipient.from_str(pipeline))
    return found


def encrypt_in_place(path: Path, to: Sequence[object]) -> Path:
    """Replace `path` by `path.age` encrypted to `to`; returns the new path."""
    target = path.with_name(path.name + AGE_SUFFIX)
    target.write_bytes(pyrage.encrypt(path.read_bytes(), list(to)))
    target.chmod(FILE_MODE)
    path.unlink()
    return target


def decrypt_with_ssh_key(path: Path, private_key: Path) -> bytes:
    """The plaintext of an encrypted batch file, with an (unencrypted) OpenSSH private key."""
    identity = ssh.Identity.from_buffer(private_key.read_bytes())
    try:
        return bytes(pyrage.decrypt(path.read_bytes(), [identity]))
    except pyrage.DecryptError as error:
        raise SealingError(f"{path.name}: not encrypted to key {private_key}: {error}") from error


def reencrypt(path: Path, pipeline: x25519.Identity, to: Sequence[object]) -> None:
    """Decrypt `path` with the pipeline's key and encrypt it again to `to` (reassignment)."""
    try:
        plain = pyrage.decrypt(path.read_bytes(), [pipeline])
    except pyrage.DecryptError as error:
        raise SealingError(f"{path}: the pipeline's key cannot open it: {error}") from error
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(pyrage.encrypt(bytes(plain), list(to)))
    temporary.chmod(FILE_MODE)
    temporary.replace(path)

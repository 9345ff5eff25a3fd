"""OpenSSH public keys: parsing one `allowed_signers`-style key and its SHA-256 fingerprint.

A person is known by the fingerprint of a key they hold, exactly as `ssh-keygen -l` prints it
(`SHA256:` and the unpadded base64 of the SHA-256 of the key blob), so an id typed into a file
proves nothing; only a signature by a registered key does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

ACCEPTED_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


class KeyFormatError(ValueError):
    """A public key that is not one OpenSSH key line of an accepted type."""


@dataclass(frozen=True)
class PublicKey:
    """One OpenSSH public key: its type, its wire-format blob and its fingerprint."""

    key_type: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_blob(self.blob)

    @property
    def openssh(self) -> str:
        """`type base64` (no comment): the form written to `allowed_signers`."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"


def fingerprint_of_blob(blob: bytes) -> str:
    """`SHA256:<base64 without padding>` of a key blob, as `ssh-keygen -l` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def read_ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    """One SSH wire-format string (uint32 length, then bytes) at `offset`; the next offset."""
    if offset + 4 > len(data):
        raise KeyFormatError("truncated SSH string")
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    end = offset + 4 + length
    if end > len(data):
        raise KeyFormatError("truncated SSH string")
    return data[offset + 4 : end], end


def parse_public_key(line: str) -> PublicKey:
    """Parse `type base64 [comment]` (a `.pub` file's line); the blob must name the same type."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise KeyFormatError("expected 'type base64-key [comment]'")
    key_type, encoded = parts[0], parts[1]
    if key_type not in ACCEPTED_KEY_TYPES:
        raise KeyFormatError(f"key type {key_type!r} is not accepted")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyFormatError("the key is not valid base64") from error
    inner_type, _ = read_ssh_string(blob, 0)
    if inner_type.decode("ascii", "replace") != key_type:
        raise KeyFormatError("the key blob names another key type")
    return PublicKey(key_type=key_type, blob=blob)


def public_key_from_blob(blob: bytes) -> PublicKey:
    """The key whose wire-format blob is `blob` (as embedded in an SSH signature)."""
    key_type, _ = read_ssh_string(blob, 0)
    name = key_type.decode("ascii", "replace")
    if name not in ACCEPTED_KEY_TYPES:
        raise KeyFormatError(f"key type {name!r} is not accepted")
    return PublicKey(key_type=name, blob=blob)

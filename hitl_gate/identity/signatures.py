"""SSH signatures (the `sshsig` format of `ssh-keygen -Y`) made and checked by OpenSSH itself.

No cryptography is implemented here: signing and verification run `ssh-keygen -Y sign` and
`ssh-keygen -Y verify`, the maintained implementation people already use to sign git commits.
The only thing read in Python is which public key a signature claims (a plain wire-format
field), so the registry can say whose key it is before OpenSSH checks the signature with it.

Every purpose has its own namespace, so a signature made to return verdicts can never be
replayed as a policy approval, and the reverse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hitl_gate.identity.keys import (
    KeyFormatError,
    PublicKey,
    public_key_from_blob,
    read_ssh_string,
)

SSH_KEYGEN = "ssh-keygen"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
MAGIC = b"SSHSIG"
SIGNATURE_SUFFIX = ".sig"

# One namespace per purpose (ssh-keygen's `-n`): a signature is valid for its purpose only.
VERDICTS = "hitl-gate-verdicts"
PEOPLE = "hitl-gate-people"
POLICY = "hitl-gate-policy"
AUTOMATION = "hitl-gate-automation"
MODELS = "hitl-gate-models"
REVIEW_ADMIN = "hitl-gate-review-admin"
RETENTION = "hitl-gate-retention"
# Portal: a person's enrolment of their sign-in credential, and the portal's attestations.
PORTAL = "hitl-gate-portal"
NAMESPACES = frozenset(
    {VERDICTS, PEOPLE, POLICY, AUTOMATION, MODELS, REVIEW_ADMIN, RETENTION, PORTAL}
)
VERIFY_TIMEOUT_SECONDS = 30
MEMO_LIMIT = 10_000

# Signatures OpenSSH has already found good in this process, by (SHA-256 of the data, signature,
# namespace, key): the registry is replayed, and each act re-verified, every time it is loaded,
# so without this a registry of a few hundred acts would cost seconds per load. Only successes
# are kept, and the key holds a digest of the data, never the data itself.
_good_signatures: set[tuple[str, str, str, str]] = set()


class SignatureError(ValueError):
    """A signature that is missing, malformed, made for another purpose or not valid."""


def ssh_keygen() -> str:
    """The `ssh-keygen` program (OpenSSH 8.2 or later signs with `-Y`)."""
    found = shutil.which(SSH_KEYGEN)
    if found is None:
        raise SignatureError("ssh-keygen (OpenSSH) is not installed; it signs and verifies acts")
    return found


def new_key_pair(path: Path, comment: str, key_type: str = "ed25519") -> Path:
    """A key pair without passphrase at `path` (and `path.pub`), made by `ssh-keygen`; `path`.

    For keys a program holds itself (the portal's, the demo people's, tests'); a person makes
    their own key with their own tools and registers only its public half."""
    subprocess.run(
        [ssh_keygen(), "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def _check_namespace(namespace: str) -> None:
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown signature namespace {namespace!r}")


def sign_bytes(data: bytes, key_path: Path, namespace: str) -> str:
    """An armored SSH signature of `data` by the key at `key_path` (private key, or a public
    key whose private half is in the ssh-agent)."""
    _check_namespace(namespace)
    result = subprocess.run(
        [ssh_keygen(), "-q", "-Y", "sign", "-f", str(key_path), "-n", namespace],
        input=data,
        capture_output=True,
        check=False,
        timeout=VERIFY_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise SignatureError(f"ssh-keygen could not sign with {key_path}: {message}")
    return result.stdout.decode("ascii")


def signature_path(path: Path) -> Path:
    """Where the detached signature of `path` lives: `path` + `.sig`, as `ssh-keygen -Y sign`."""
    return path.with_name(path.name + SIGNATURE_SUFFIX)


def sign_file(path: Path, key_path: Path, namespace: str) -> Path:
    """Write the detached signature `<path>.sig` of the file's exact bytes; returns its path."""
    armored = sign_bytes(path.read_bytes(), key_path, namespace)
    target = signature_path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(armored, encoding="ascii")
    temporary.replace(target)
    return target


def _signature_blob(armored: str) -> bytes:
    text = armored.strip()
    if not (text.startswith(ARMOR_BEGIN) and text.endswith(ARMOR_END)):
        raise SignatureError("not an SSH signature (no BEGIN/END SSH SIGNATURE armor)")
    body = "".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError("the SSH signature is not valid base64") from error
    if not blob.startswith(MAGIC):
        raise SignatureError("not an SSH signature (no SSHSIG magic)")
    return blob


def claimed_key(armored: str) -> PublicKey:
    """The public key a signature says made it: not yet a proof (`verify` checks that)."""
    blob = _signature_blob(armored)
    offset = len(MAGIC) + 4  # magic, then the uint32 version
    try:
        key_blob, _ = read_ssh_string(blob, offset)
        return public_key_from_blob(key_blob)
    except KeyFormatError as error:
        raise SignatureError(f"the SSH signature names no usable key: {error}") from error


def claimed_namespace(armored: str) -> str:
    """The namespace a signature was made for (shown when one is used for the wrong purpose)."""
    blob = _signature_blob(armored)
    try:
        _, offset = read_ssh_string(blob, len(MAGIC) + 4)
        namespace, _ = read_ssh_string(blob, offset)
    except KeyFormatError as error:
        raise SignatureError(f"malformed SSH signature: {error}") from error
    return namespace.decode("utf-8", "replace")


def verify(data: bytes, armored: str, namespace: str, key: PublicKey) -> None:
    """Raise `SignatureError` unless `armored` is `key`'s valid signature of `data` for
    `namespace`, as checked by `ssh-keygen -Y verify` against an allowed-signers file naming
    only `key`."""
    _check_namespace(namespace)
    signed_for = claimed_namespace(armored)
    if signed_for != namespace:
        raise SignatureError(f"signature made for {signed_for!r}, not for {namespace!r}")
    if claimed_key(armored) != key:
        raise SignatureError(f"signature not made by key {key.fingerprint}")
    memo = (hashlib.sha256(data).hexdigest(), armored, namespace, key.openssh)
    if memo in _good_signatures:
        return
    _openssh_verify(data, armored, namespace, key)
    _remember(memo)


def _openssh_verify(data: bytes, armored: str, namespace: str, key: PublicKey) -> None:
    with tempfile.TemporaryDirectory(prefix="hitl-sig-") as folder:
        command = _verify_command(Path(folder), armored, namespace, key)
        result = subprocess.run(
            command,
            input=data,
            capture_output=True,
            check=False,
            timeout=VERIFY_TIMEOUT_SECONDS,
        )
    if result.returncode != 0:
        raise SignatureError(f"signature by {key.fingerprint} does not match these bytes")


def _verify_command(folder: Path, armored: str, namespace: str, key: PublicKey) -> list[str]:
    """`ssh-keygen -Y verify` of `armored` against an allowed-signers file naming only `key`,
    both written into `folder`; the data goes to its standard input."""
    allowed = folder / "allowed_signers"
    allowed.write_text(f'signer namespaces="{namespace}" {key.openssh}\n', encoding="ascii")
    signature = folder / "data.sig"
    signature.write_text(armored, encoding="ascii")
    return [ssh_keygen(), "-Y", "verify", "-f", str(allowed), "-I", "signer", "-n", namespace] + [
        "-s",
        str(signature),
    ]


def preverify(items: list[tuple[bytes, str, str, PublicKey]], parallel: int = 8) -> None:
    """Check many signatures (data, armored, namespace, key) with concurrent `ssh-keygen`
    processes, remembering the good ones, so that `verify` of each afterwards costs nothing.

    A speed-up only, never a verdict: a malformed or bad signature is skipped here and left
    for `verify` to refuse with its own message. Loading the registry in a new process checks
    every act; one OpenSSH process after another was most of that time (about 10 ms each on a
    quiet machine, 80 ms under load), while they are independent and mostly waiting.
    """
    pending = []
    for data, armored, namespace, key in items:
        try:
            _check_namespace(namespace)
            good = claimed_namespace(armored) == namespace and claimed_key(armored) == key
        except (SignatureError, ValueError):
            continue
        memo = (hashlib.sha256(data).hexdigest(), armored, namespace, key.openssh)
        if good and memo not in _good_signatures:
            pending.append((data, armored, namespace, key, memo))
    for start in range(0, len(pending), parallel):
        with tempfile.TemporaryDirectory(prefix="hitl-sigs-") as root:
            running = []
            for number, (data, armored, namespace, key, memo) in enumerate(
                pending[start : start + parallel]
            ):
                folder = Path(root) / str(number)
                folder.mkdir()
                process = subprocess.Popen(
                    _verify_command(folder, armored, namespace, key),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                running.append((process, data, memo))
            for process, data, memo in running:
                try:
                    process.communicate(data, timeout=VERIFY_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
                    continue
                if process.returncode == 0:
                    _remember(memo)


def _remember(memo: tuple[str, str, str, str]) -> None:
    if len(_good_signatures) >= MEMO_LIMIT:
        _good_signatures.clear()
    _good_signatures.add(memo)

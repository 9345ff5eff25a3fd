"""SSH keys made once per test process and copied into each test's keyring; ed25519 signatures
remembered per process.

The review and portal tests register the same few people (`analyst-7`, `uw-ana`, the portal's
key...) in every test's own registry, hundreds of times per run, and each registration was three
`ssh-keygen` processes: making the key, signing the act, and the registry verifying it. A key
made once per process and copied is the same kind of key (`ssh-keygen -t <type>`, the name as
its comment) in the test's own keys folder; each test still has its own registry, which knows
only the people that test registered. Two names never share a key, so a test that needs a
second key (a rotation, an impostor) names it, as before.

OpenSSH's ed25519 signatures are deterministic (RFC 8032; `ssh-keygen -Y sign` over the same
bytes, namespace and key gives the same armored text), so a signature remembered by (key,
namespace, bytes) is exactly what a new `ssh-keygen -Y sign` would print; other key types
(ECDSA draws a nonce) are always signed afresh. The library's verifier keeps its own per-process
memo of signatures it checked (`identity.signatures`), which a repeated signature then finds.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

from hitl_gate.identity.signatures import PEOPLE, new_key_pair, sign_bytes, signature_path
from hitl_gate.identity.store import SignedAct
from tests.identity_fixtures import Keyring

DETERMINISTIC = ("_ed25519",)  # key files (`<name>_<type>`) whose signatures may be remembered
_POOL: list[Path] = []  # the process's pool folder, made on first use
_SIGNATURES: dict[tuple[str, str, str], str] = {}  # (key file digest, namespace, data digest)


def pooled_key(name: str, key_type: str = "ed25519") -> Path:
    """The process's key pair `<name>_<type>` (made by `ssh-keygen` on first use)."""
    if not _POOL:
        folder = Path(tempfile.mkdtemp(prefix="hitl-gate-key-pool-"))
        atexit.register(shutil.rmtree, folder, True)
        _POOL.append(folder)
    path = _POOL[0] / f"{name}_{key_type}"
    if not path.exists():
        new_key_pair(path, name, key_type)
    return path


def remembered_signature(data: bytes, key_path: Path, namespace: str) -> str:
    """`sign_bytes(data, key_path, namespace)`, remembered when the key is deterministic."""
    if not key_path.name.endswith(DETERMINISTIC):
        return sign_bytes(data, key_path, namespace)
    private = hashlib.sha256(key_path.read_bytes()).hexdigest()
    memo = (private, namespace, hashlib.sha256(data).hexdigest())
    armored = _SIGNATURES.get(memo)
    if armored is None:
        armored = _SIGNATURES[memo] = sign_bytes(data, key_path, namespace)
    return armored


class PooledKeyring(Keyring):
    """A `Keyring` whose keys are copies of the process's pooled keys (module docstring), and
    whose ed25519 signatures are remembered."""

    def private(self, name: str, key_type: str = "ed25519") -> Path:
        if name not in self.made:
            source = pooled_key(name, key_type)
            target = self.folder / source.name
            self.folder.mkdir(parents=True, exist_ok=True)
            for suffix in ("", ".pub"):
                shutil.copy2(f"{source}{suffix}", f"{target}{suffix}")
            self.made[name] = target
        return self.made[name]

    def sign_act(self, payload: bytes, signer: str) -> SignedAct:
        return SignedAct(payload, remembered_signature(payload, self.private(signer), PEOPLE))

    def sign_file(self, path: Path, signer: str, namespace: str) -> Path:
        """What `identity.signatures.sign_file` writes with `signer`'s key: `path.sig`."""
        target = signature_path(path)
        armored = remembered_signature(path.read_bytes(), self.private(signer), namespace)
        target.write_text(armored, encoding="ascii")
        return target


def pooled_keyring(folder: Path) -> PooledKeyring:
    """`Keyring.of(folder)` (knowing the keys already there), pooled."""
    known = Keyring.of(folder)
    return PooledKeyring(known.folder, known.made)

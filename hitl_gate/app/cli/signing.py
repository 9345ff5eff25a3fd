"""What the commands that record a signed act share: the `--signing-key` option and signing.

A key argument is a private key file, or a `.pub` file whose private half is in the ssh-agent
(as `ssh-keygen -Y sign -f` accepts); the private key never leaves the operator's machine and
is never written anywhere by hitl-gate.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hitl_gate.identity.signed_acts import SignedPayload

KEY_HELP = "your SSH key: a private key file, or a .pub whose private half is in ssh-agent"


def add_signing_key(parser: argparse.ArgumentParser, *, flag: str = "--signing-key") -> None:
    """The required `--signing-key PATH` option of a command that records a signed act."""
    parser.add_argument(flag, required=True, metavar="PATH", help=KEY_HELP)


def signed(payload: bytes, key: str, namespace: str, what: str) -> SignedPayload:
    """`payload` signed with `key`, or exit with one line saying why it could not be."""
    from hitl_gate.identity.signatures import SignatureError
    from hitl_gate.identity.signed_acts import sign_payload

    path = Path(key).expanduser()
    if not path.is_file():
        raise SystemExit(f"REFUSED: {what}: no key file at {path}")
    try:
        return sign_payload(payload, path, namespace)
    except SignatureError as exc:
        raise SystemExit(f"REFUSED: {what}: {exc}") from exc

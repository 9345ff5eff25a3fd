"""One loader for both signing keys: an injected hex value, else a per-home key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hitl_gate.core.key_files import load_or_create_key


def _load(key_file: Path, injected: str | None = None, minimum: int | None = None) -> bytes:
    return load_or_create_key(
        key_file, injected_hex=injected, injected_from="HITL_X_KEY", size=32,
        min_injected_size=minimum,
    )  # fmt: skip


def test_the_file_is_created_once_private(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "x.key"
    first = _load(key_file)
    assert len(first) == 32 and _load(key_file) == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700


def test_an_injected_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "x.key"
    assert _load(key_file, " " + "ab" * 32 + "\n") == bytes.fromhex("ab" * 32)
    assert not key_file.exists()
    assert _load(key_file, "cd" * 16, minimum=16) == bytes.fromhex("cd" * 16)


@pytest.mark.parametrize(
    ("injected", "minimum", "message"),
    [
        ("not-hex", None, "HITL_X_KEY is not valid hex"),
        ("ab" * 31, None, "HITL_X_KEY: expected 32 bytes, found 31"),
        ("ab" * 15, 16, "HITL_X_KEY must hold at least 16 bytes"),
    ],
)
def test_bad_injected_keys_fail_naming_the_source(tmp_path, injected, minimum, message) -> None:
    with pytest.raises(ValueError, match=message):
        _load(tmp_path / "x.key", injected, minimum)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "x.key"
    key_file.write_bytes(b"short")
    with pytest.raises(ValueError, match="expected 32 bytes, found 5"):
        _load(key_file)


def test_both_signing_keys_use_it(tmp_path: Path) -> None:
    from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
    from hitl_gate.review.signing import load_or_create_key as review_key

    seed = "11" * 32
    audit = load_or_create_signing_key(tmp_path / "audit.key", seed)
    assert public_key_hex(audit) == public_key_hex(
        load_or_create_signing_key(tmp_path / "a2", seed)
    )
    with pytest.raises(ValueError, match="HITL_AUDIT_SIGNING_KEY"):
        load_or_create_signing_key(tmp_path / "audit.key", "11" * 16)  # a seed is 32 bytes
    assert review_key(tmp_path / "secrets", "22" * 16) == bytes.fromhex("22" * 16)
    with pytest.raises(ValueError, match="HITL_REVIEW_KEY"):
        review_key(tmp_path / "secrets", "zz")

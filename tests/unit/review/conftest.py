"""The review tests' signing key: one per test process, in each test's own secrets folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hitl_gate.review.signing import KEY_FILE, load_or_create_key


@pytest.fixture(scope="session")
def _review_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    secrets = tmp_path_factory.mktemp("review-key") / "secrets"
    load_or_create_key(secrets)
    return secrets / KEY_FILE


@pytest.fixture
def key(tmp_path: Path, _review_key_file: Path) -> bytes:
    """The review signing key in the test's own secrets folder, as `load_or_create_key` made
    it there: random bytes made once per test process and copied, so that every workspace a
    process exports from the same cases is the same files (`tests.review_fixtures`
    `make_workspace` exports once and copies). A test needing another key makes its own."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(_review_key_file, secrets / KEY_FILE)
    return load_or_create_key(secrets)

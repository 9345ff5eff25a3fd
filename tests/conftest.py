"""Shared fixtures: every test gets its own hitl home so nothing touches the checkout's state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_gate.home import HitlPaths


@pytest.fixture
def hitl_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HitlPaths:
    """A fresh, isolated home (landing and review folders inside it) for one test."""
    from hitl_gate.runner import use_paths

    for name in ("HITL_HOME", "HITL_LANDING_DIR", "HITL_REVIEW_DIR", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    paths = HitlPaths.from_env(tmp_path / "home")
    use_paths(paths)
    return paths


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HitlPaths]:
    """`hitl demo` run once per session into a fresh home (the real sample, every component).

    Shared by every end-to-end test to keep the suite fast: tests may add to this state
    (new files, verdicts, runs) but must not delete or rewrite what others rely on.
    """
    from hitl_gate.cli import main

    home = tmp_path_factory.mktemp("demo") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HITL_HOME", "HITL_LANDING_DIR", "HITL_REVIEW_DIR", "DAGSTER_HOME"):
            patch.delenv(name, raising=False)
        main(["--home", str(home), "demo"])
        yield HitlPaths.from_env(home)


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A review signing key in the test's own secrets folder (never the environment's)."""
    from hitl_gate.review.signing import KEY_ENV, load_or_create_key

    monkeypatch.delenv(KEY_ENV, raising=False)
    return load_or_create_key(tmp_path / "secrets")

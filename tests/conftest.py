"""Shared fixtures: every test gets its own hitl home so nothing touches the checkout's state."""

from __future__ import annotations

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

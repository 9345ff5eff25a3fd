"""Stores two processes create on first use wait for each other: MLflow's tables, Feast's registry.

Two domains' runs on a fresh home (`hitl demo` side by side, two schedules) open them at the
same moment; MLflow's migrations run twice at once failed the demo's first side-by-side run
("Online migration expected to match one row ... 0 found"). Here a test holds the lock file
while a spawned process opens the store: nothing may be created until the lock is released.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from hitl_gate.core.file_lock import exclusive_lock

SPAWN = multiprocessing.get_context("spawn")
HELD_SECONDS = 5.0


def open_mlflow(mlflow_dir: str, ready: str) -> None:
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - what configure would import

    from models.mlflow_store import configure

    Path(ready).touch()  # imported: from now on, only the lock can hold it back
    configure(Path(mlflow_dir))


def open_feast(feast_dir: str, ready: str) -> None:
    import feast.infra.registry.sql  # noqa: F401 - what open_feature_store would import

    from features.definitions import feature_objects  # noqa: F401 - likewise
    from features.store import open_feature_store
    from hitl_gate.core.domain import load_domain

    domain = load_domain("consumer_credit")

    Path(ready).touch()
    open_feature_store(domain, Path(feast_dir))


def _held_back(target, folder: Path, lock_file: Path, created: Path) -> None:  # noqa: ANN001
    """Start `target` while `lock_file` is held; `created` must not appear until released."""
    ready = folder / "ready"
    with exclusive_lock(lock_file):
        child = SPAWN.Process(target=target, args=(str(folder), str(ready)))
        child.start()
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert child.is_alive() and time.monotonic() < deadline, "the child never got ready"
            time.sleep(0.1)
        time.sleep(HELD_SECONDS)
        assert child.is_alive()
        assert not created.exists(), f"{created.name} was made while the lock was held"
    child.join(240)
    assert child.exitcode == 0
    assert created.exists()


@pytest.mark.slow
def test_mlflow_tables_wait_for_the_lock(tmp_path: Path) -> None:
    from models.mlflow_store import TABLES_LOCK_FILE

    _held_back(open_mlflow, tmp_path, tmp_path / TABLES_LOCK_FILE, tmp_path / "mlflow.db")


@pytest.mark.slow
def test_feast_registry_waits_for_the_lock(tmp_path: Path) -> None:
    from features.config import REGISTRY_FILE
    from features.store import REGISTRY_LOCK_FILE

    _held_back(open_feast, tmp_path, tmp_path / REGISTRY_LOCK_FILE, tmp_path / REGISTRY_FILE)

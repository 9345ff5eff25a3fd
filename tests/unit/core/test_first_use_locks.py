"""Stores two processes create on first use wait for each other: MLflow's tables, Feast's registry.

Two domains' runs on a fresh home (`hitl demo` side by side, two schedules) open them at the
same moment; MLflow's migrations run twice at once failed the demo's first side-by-side run
("Online migration expected to match one row ... 0 found"). Here a test holds the lock file
while another process opens the store: that process must be seen blocked on the lock (the
kernel lists it waiting, /proc/locks) with nothing created, and create the store once the lock
is released. The opener is forked from the test process's fork server (tests/fork_server.py),
MLflow and Feast imported already.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hitl_gate.core.file_lock import exclusive_lock
from tests.fork_server import FORK_SERVER_GROUP, ForkedChild, ForkServer

pytestmark = [
    pytest.mark.slow,  # a process opening a real store
    pytest.mark.xdist_group(FORK_SERVER_GROUP),
    pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's lock list"),
]

WAIT_SECONDS = 240


def open_mlflow(mlflow_dir: str) -> None:
    from models.mlflow_store import configure

    configure(Path(mlflow_dir))


def open_feast(feast_dir: str) -> None:
    from features.store import open_feature_store
    from hitl_gate.core.domain import load_domain

    open_feature_store(load_domain("consumer_credit"), Path(feast_dir))


def waits_on(lock_file: Path, pid: int) -> bool:
    """Whether process `pid` is blocked waiting for a lock on `lock_file` (a `->` line of
    /proc/locks: a waiter, with its pid and the file's inode)."""
    waiter = ["->", str(pid), str(os.stat(lock_file).st_ino)]
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # 1: -> FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF
        if len(fields) > 6 and [fields[1], fields[5], fields[6].rsplit(":", 1)[-1]] == waiter:
            return True
    return False


def _held_back(
    server: ForkServer, target: Callable[[str], None], folder: Path, lock: Path, created: Path
) -> None:
    """Start `target` while `lock` is held: it must block on the lock with `created` not made
    yet, and make it once the lock is released."""
    output = folder.parent / f"{folder.name}.out"
    with exclusive_lock(lock):
        child = server.start(target, str(folder), output=output)
        try:
            _blocked_on(child, lock, created, output)
        except BaseException:
            child.kill()
            raise
    assert child.join(WAIT_SECONDS) == 0, output.read_text()
    assert created.exists()


def _blocked_on(child: ForkedChild, lock: Path, created: Path, output: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not waits_on(lock, child.pid):
        assert not created.exists(), f"{created.name} was made while the lock was held"
        assert child.is_alive(), f"the child ended without waiting: {output.read_text()}"
        assert time.monotonic() < deadline, "the child never waited for the lock"
        time.sleep(0.02)
    assert not created.exists(), f"{created.name} was made while the lock was held"


def test_mlflow_tables_wait_for_the_lock(fork_server: ForkServer, tmp_path: Path) -> None:
    from models.mlflow_store import TABLES_LOCK_FILE

    folder = tmp_path / "mlflow"
    created = folder / "mlflow.db"
    _held_back(fork_server, open_mlflow, folder, folder / TABLES_LOCK_FILE, created)


def test_feast_registry_waits_for_the_lock(fork_server: ForkServer, tmp_path: Path) -> None:
    from features.config import REGISTRY_FILE
    from features.store import REGISTRY_LOCK_FILE

    folder = tmp_path / "feast"
    created = folder / REGISTRY_FILE
    _held_back(fork_server, open_feast, folder, folder / REGISTRY_LOCK_FILE, created)


def test_the_check_sees_a_process_waiting_for_a_lock_and_only_then(
    fork_server: ForkServer, tmp_path: Path
) -> None:
    """`waits_on` is what the tests above rest on: true for a process blocked on the file,
    false for another file, and false once the process has had its turn."""
    lock, other = tmp_path / "a.lock", tmp_path / "b.lock"
    other.touch()
    with exclusive_lock(lock):
        child = fork_server.start(hold, str(lock), output=tmp_path / "out")
        _blocked_on(child, lock, tmp_path / "never", tmp_path / "out")
        assert not waits_on(other, child.pid)
    assert child.join(WAIT_SECONDS) == 0
    assert not waits_on(lock, child.pid)


def hold(lock: str) -> None:
    with exclusive_lock(Path(lock)):
        pass

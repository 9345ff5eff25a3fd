"""Shared fixtures: every test gets its own hitl home so nothing touches the checkout's state.

The tree mirrors the layers: tests/unit/<layer>/ (library units on small inputs), tests/assets/
(assets called directly), tests/e2e/ (real asset runs, jobs and the demo; marked `e2e` here, and
the only place the demo home's fixtures exist: tests/e2e/conftest.py).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from threadpoolctl import threadpool_limits

from hitl_gate.core.home import HitlPaths
from models.model_format import import_model_format
from tests.blank_audit_db import blank_if_missing
from tests.fork_server import DEPLOYMENT_ENV

if TYPE_CHECKING:
    from tests.fork_server import ForkServer
    from tests.portal_fixtures import WorldTemplates

# Temporary homes go to memory when the machine has a tmpfs with room: every Dagster event,
# audit commit and lineage write syncs its file (about 1,800 fdatasync calls for one demo day,
# about 3 ms each on this machine's disk), which is waiting the suite does not need to test.
# An explicit `--basetemp` wins; without a tmpfs the default temporary folder is used.
TMPFS = Path("/dev/shm")
TMPFS_FREE_BYTES = 4 * 2**30
TMPFS_PREFIX = "hitl-gate-tests-"
E2E_DIR = Path(__file__).parent / "e2e"
SLOW_TESTS = Path(__file__).parent / "slow_tests.txt"  # measured slow: `make test` only
_TMPFS_BASE = pytest.StashKey[Path]()
THREAD_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
HEAP_SETTLE_LIMIT = 10  # collections at most (pytest's own check makes 5)


def one_thread_per_process() -> None:
    """One OpenMP and one BLAS thread in this process and in those it starts.

    The suite runs a worker per core, so a second thread only ever waits for a core, and
    OpenMP's and OpenBLAS's threads wait by spinning: scikit-learn's gradient boosting (the
    challenger trained in test_model_governance_e2e.py) took about 10x the CPU with two threads
    on the busy 2-core machine (4.4 s against 0.33 s for 9,000 rows; the scorecard's fit 3x),
    for the same model (equal predictions). A library loads its pool's size when it is first
    loaded (the variables, inherited by child processes) or is told by threadpoolctl (those
    loaded already, numpy's OpenBLAS among them). A deployment's own values are kept.
    """
    omp, blas = (int(os.environ.setdefault(name, "1")) for name in THREAD_POOL_ENV)
    threadpool_limits({"openmp": omp, "blas": blas})


one_thread_per_process()  # at collection, so every test of the run computes alike
# skops next, before any test imports Dagster, Great Expectations, Feast or MLflow: its import
# walks every module loaded before it 836 times (models/model_format.py), over 3 s of CPU in a
# worker that had run end-to-end tests first, and a full run's workers all train or load a
# model. After the thread pools are sized: it loads scikit-learn's OpenMP.
import_model_format()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Point pytest's temporary folders at the tmpfs (before `tmp_path_factory` reads them)."""
    if config.option.basetemp is not None or not os.access(TMPFS, os.W_OK | os.X_OK):
        return
    _remove_abandoned(TMPFS)
    if shutil.disk_usage(TMPFS).free < TMPFS_FREE_BYTES:
        return
    base = Path(tempfile.mkdtemp(prefix=f"{TMPFS_PREFIX}{os.getpid()}-", dir=TMPFS))
    config.option.basetemp = str(base)
    config.stash[_TMPFS_BASE] = base


def pytest_unconfigure(config: pytest.Config) -> None:
    """Free the memory the temporary homes held (pass `--basetemp DIR` to keep them), then
    settle the heap (`settle_heap`)."""
    base = config.stash.get(_TMPFS_BASE, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
    settle_heap()


def settle_heap() -> None:
    """Collect the garbage until a collection finds none, then freeze what is left.

    After this hook pytest collects five times more to report exceptions raised by finalizers
    (`PytestUnraisableExceptionWarning`), and the interpreter collects again while it shuts
    down: each collection walks every object the process still holds. A worker that ran the
    end-to-end tests holds millions (Dagster, Feast, MLflow, pandas and their caches), and
    those walks took about 4.5 s after its last test (2026-12-06: 4.7 s from the last test's
    end to the summary, 0.5 s with this), time the run's summary waits for. Collecting until
    nothing is found reports every such exception the five collections would have (a
    collection finding nothing frees nothing, so the next finds nothing either); frozen, the
    objects still alive are skipped by the later walks.
    """
    for _ in range(HEAP_SETTLE_LIMIT):
        if not gc.collect():
            break
    gc.freeze()


def _remove_abandoned(folder: Path) -> None:
    """Free the folders of sessions killed before `pytest_unconfigure` (their process is gone)."""
    for path in folder.glob(f"{TMPFS_PREFIX}*-*"):
        pid = path.name.removeprefix(TMPFS_PREFIX).split("-")[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    """Signal 0 only asks whether the process exists; nothing is sent to it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e/ `e2e` and the tests measured slow (tests/slow_tests.txt)
    `slow`, before `-m` deselects."""
    measured_slow = measured_slow_tests(SLOW_TESTS)
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)
        if item.nodeid in measured_slow:
            item.add_marker(pytest.mark.slow)


def measured_slow_tests(listing: Path) -> frozenset[str]:
    """The test ids listed in `listing`, one a line (`#` starts a comment line)."""
    lines = listing.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Undo what a test left in `os.environ`: the CLI exports the home it was given (HITL_*,
    DAGSTER_HOME), which must not reach the next test, whatever the order."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


def _clear_deployment_environment(patch: pytest.MonkeyPatch) -> None:
    """Unset the variables that place an installation: a `hitl` command run by a test must not
    follow the developer's shell to another home (domain folders a test sets stay)."""
    for name in DEPLOYMENT_ENV:
        patch.delenv(name, raising=False)


@pytest.fixture
def hitl_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HitlPaths:
    """A fresh, isolated home (landing and review folders inside it) for one test."""
    _clear_deployment_environment(monkeypatch)
    return HitlPaths.at(tmp_path / "home")


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    """A review signing key in the test's own secrets folder (the library never reads the
    environment; an injected key comes through the `ReviewWorkspace` resource)."""
    from hitl_gate.review.signing import load_or_create_key

    return load_or_create_key(tmp_path / "secrets")


@pytest.fixture
def fresh_audit_db(tmp_path: Path) -> Path:
    """`tmp_path / "audit.duckdb"`, a new audit database with the schema (a copy of the
    process's schema-only one, `tests/blank_audit_db.py`): request it where a test's first
    step opens a new audit database there."""
    return blank_if_missing(tmp_path / "audit.duckdb")


@pytest.fixture(scope="session")
def portal_worlds(tmp_path_factory: pytest.TempPathFactory) -> WorldTemplates:
    """Portal worlds built once per test process (each xdist worker builds its own), copied
    into each test's folder: `portal_worlds.make(tmp_path, enrolled=..., assigned=...)`."""
    from tests.portal_fixtures import WorldTemplates

    return WorldTemplates(tmp_path_factory.mktemp("portal-worlds"))


@pytest.fixture(scope="session")
def fork_server() -> ForkServer:
    """Children forked from this process's forkserver, which imported the code location and
    the stages' libraries (tests/fork_server.py); started by the first test asking, kept for
    the run. Its tests carry `pytest.mark.xdist_group(FORK_SERVER_GROUP)`, so one worker
    starts it (the server's environment leaves out what places an installation, so no child
    follows the home of the test that started it)."""
    from tests.fork_server import ForkServer, shared_forkserver

    return ForkServer(shared_forkserver())

"""End-to-end fixtures: the demo home, a fresh one for every test that asks for it.

Defined here, so only tests under tests/e2e/ can use it (`make test-fast` never builds it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import DOMAINS_ENV
from tests.e2e.claims_home import ClaimsHome, build_claims, claims_home_at
from tests.e2e.home_templates import HOME_ENV_NAMES, HomeTemplate, session_template

TEMPLATE_SUFFIX = "_template"  # session fixtures of built homes (home_templates.HomeTemplate)
# Templates whose tests stay on one xdist worker (`xdist_group`), so that they never wait for
# each other's lock. Spreading a template's tests would need a build per worker (each in its
# own folder: a built home cannot move) and pays only while some worker would otherwise idle:
# the run is bound by its CPU work, so a second demo build (about 75 s) would cost more than
# spreading the demo's tests saves. xdist hands out the largest group first, so the demo's
# group (the build, about 80 s, and some 55 tests) and the claims home's (its build and 3
# tests, the recovery test's 14 killed runs among them; with every other test forking from
# this process's forkserver: tests/fork_server.py) start on different workers; the demo's
# group must stay well below half the suite's work (2026-12-06: about 240 s of 600-700).
ONE_WORKER_TEMPLATES = frozenset({"claims_template", "demo_template"})
E2E_DIR = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the users of a one-worker template on one xdist worker (`--dist loadgroup`; xdist
    reads the groups after this hook). Under xdist, hand out the longest tests first: users of
    built homes, then the other end-to-end and slow tests, then the rest (a stable sort: the
    random order within each stays). The builds start at once, and the many short
    tests come last, where they even out the workers' finishing times."""
    for item in items:
        for name in _templates(item):
            if name in ONE_WORKER_TEMPLATES:
                item.add_marker(pytest.mark.xdist_group(name))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_expected_length)


def _templates(item: pytest.Item) -> list[str]:
    return [n for n in getattr(item, "fixturenames", ()) if n.endswith(TEMPLATE_SUFFIX)]


def _expected_length(item: pytest.Item) -> int:
    """0 for a user of a built home, 1 for another end-to-end or slow test, 2 for the rest."""
    if _templates(item):
        return 0
    if item.path.is_relative_to(E2E_DIR) or item.get_closest_marker("slow"):
        return 1
    return 2


# How long the demo build's runs wait for the live audit file (HITL_AUDIT_LOCK_WAIT_SECONDS).
# The demo runs its domains in processes of their own that take turns on that file, a seal
# holding it for its transaction. With the machine shared (load average 14-20 on its 2 cores,
# 2026-12-07 15:21-15:35 UTC) one domain's seal held it past the deployment's 60 s, the build
# failed, and with it all 55 tests of the demo's group. The build is a fixture, not a test of
# the wait (tests/unit/pipelines/test_audit_lock_wait.py is): it waits as long as the load
# needs, and a holder that never lets go still fails it.
BUILD_LOCK_WAIT_S = 900


def build_demo(work: Path) -> None:
    """`hitl demo` into `work`/home: the real sample of every shipped domain, every component,
    with an auditor querying the replica throughout (tests/e2e/replica_auditor.py)."""
    from hitl_gate.app.cli import main
    from hitl_gate.core.settings import LOCK_WAIT_ENV
    from tests.e2e.replica_auditor import AUDITOR_RECORD, auditor_during

    with (
        pytest.MonkeyPatch.context() as patch,
        auditor_during(work / "home", work.parent / AUDITOR_RECORD),
    ):
        patch.setenv(LOCK_WAIT_ENV, str(BUILD_LOCK_WAIT_S))
        main(["--home", str(work / "home"), "demo"])


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeTemplate]:
    """The demo home of the run, built once (by whichever xdist worker needs it first)."""
    yield from session_template(tmp_path_factory, "demo-template", build_demo)


@pytest.fixture
def demo_home(demo_template: HomeTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[HitlPaths]:
    """`hitl demo` run into a home of this test's own (the run's build, restored for it).

    Tests may change anything in it: the next test gets the pristine home again. The process
    points at it as `hitl demo` leaves it (HITL_* and DAGSTER_HOME), restored afterwards.
    """
    for name in HOME_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    with demo_template.checkout() as work:
        yield HitlPaths.at(work / "home")


@pytest.fixture(scope="session")
def claims_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeTemplate]:
    """The claims home of the run (tests/e2e/claims_home.py), built once."""
    yield from session_template(tmp_path_factory, "claims-template", build_claims)


@pytest.fixture
def claims(claims_template: HomeTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClaimsHome]:
    """The built claims home, restored for this test alone (tests may change anything in it);
    the process sees its domains folder (`HITL_DOMAINS_DIR`) while the test lasts."""
    for name in HOME_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    with claims_template.checkout() as work:
        home = claims_home_at(work)
        monkeypatch.setenv(DOMAINS_ENV, str(home.root / "domains"))
        yield home

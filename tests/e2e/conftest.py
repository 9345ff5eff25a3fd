"""End-to-end fixtures: the demo home, a fresh one for every test that asks for it.

Defined here, so only tests under tests/e2e/ can use it (`make test-fast` never builds it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_gate.core.home import HitlPaths
from tests.e2e.home_templates import HOME_ENV_NAMES, HomeTemplate, session_template

TEMPLATE_SUFFIX = "_template"  # session fixtures of built homes (home_templates.HomeTemplate)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the users of one built home on one xdist worker (`--dist loadgroup`), so they never
    wait for each other's lock; xdist reads the groups after this hook."""
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name.endswith(TEMPLATE_SUFFIX):
                item.add_marker(pytest.mark.xdist_group(name))


def build_demo(work: Path) -> None:
    """`hitl demo` into `work`/home: the real sample of every shipped domain, every component,
    with an auditor querying the replica throughout (tests/e2e/replica_auditor.py)."""
    from hitl_gate.app.cli import main
    from tests.e2e.replica_auditor import AUDITOR_RECORD, auditor_during

    with auditor_during(work / "home", work.parent / AUDITOR_RECORD):
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

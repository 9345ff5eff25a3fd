"""tests/slow_tests.txt (the tests `make test-fast` leaves to `make test`) names tests that
exist: a renamed or removed test cannot leave a stale line behind unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SLOW_TESTS, measured_slow_tests

ROOT = Path(__file__).parent.parent


def test_every_listed_test_is_defined_in_its_file() -> None:
    listed = measured_slow_tests(SLOW_TESTS)
    assert listed, "the listing is empty"
    stale = []
    for nodeid in sorted(listed):
        path, name = nodeid.split("::", 1)
        function = name.split("[", 1)[0]
        source = ROOT / path
        if not source.is_file() or f"def {function}(" not in source.read_text(encoding="utf-8"):
            stale.append(nodeid)
    assert not stale, f"not defined any more: {stale}"


def test_a_listed_test_is_marked_slow(request: pytest.FixtureRequest) -> None:
    """This suite's own collection: any listed test that was collected carries `slow`."""
    listed = measured_slow_tests(SLOW_TESTS)
    for item in request.session.items:
        if item.nodeid in listed:
            assert item.get_closest_marker("slow") is not None, item.nodeid

"""Feast's classes run as written: imported through this package, typeguard does not rewrite
them (features/runtime_checks.py: its instrumentation cost 2.6 s of CPU per process)."""

from __future__ import annotations

import pytest

import features  # noqa: F401 - first, as every import of Feast in the project goes through it


def test_typeguards_decorator_leaves_a_function_unchanged_bare_or_with_options() -> None:
    import typeguard

    def function(x: int) -> int:
        return x

    assert typeguard.typechecked(function) is function
    assert typeguard.typechecked(collection_check_strategy=None)(function) is function


@pytest.mark.slow  # imports Feast
def test_feasts_classes_are_not_instrumented() -> None:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource

    for cls in (Entity, FeatureService, FeatureView, Field, FileSource):
        assert "check_argument_types_internal" not in cls.__init__.__code__.co_names, cls

"""Each asset's code reference (the file and line of its function), as the Dagster UI links it.

Dagster's `with_source_code_references` finds an asset function's line with
`inspect.getsourcelines`, which tokenises the whole function body to return its lines, then
keeps only the line number. The definitions are built for every run (and by every process that
loads them), so that was 30 ms of a run's ~90 ms build for the 22 assets of the two shipped
domains. `inspect.findsource` gives the same line (`getsourcelines` returns its line plus one)
without reading the body; the reference and the metadata around it are Dagster's own types,
merged exactly as Dagster merges them (pinned against `with_source_code_references` by
tests/unit/pipelines/test_code_references.py).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSpec,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    OpDefinition,
    with_source_code_references,
)

CODE_REFERENCES_KEY = "dagster/code_references"


def with_code_references(assets: Sequence[AssetsDefinition]) -> list[AssetsDefinition]:
    """`assets`, each with a reference to its function's file and line added to its specs."""
    return [_with_code_reference(a) for a in assets]


def function_reference(fn: Callable[..., Any]) -> LocalFileCodeReference:
    """Where `fn` is defined: the file and line `with_source_code_references` names."""
    source = inspect.getsourcefile(fn)
    if source is None:
        raise OSError(f"no source file for {fn!r}")
    origin = inspect.unwrap(fn)
    line = inspect.findsource(origin)[1] + 1  # what `getsourcelines(origin)[1]` returns
    return LocalFileCodeReference(
        file_path=os.path.abspath(os.path.join(os.getcwd(), source)), line_number=line
    )


def _with_code_reference(assets_def: AssetsDefinition) -> AssetsDefinition:
    """As Dagster's: the reference appended to each spec's existing code references (a
    graph-backed asset, which has none here, is left to Dagster's own function)."""
    if not isinstance(assets_def.node_def, OpDefinition):
        referenced = with_source_code_references([assets_def])[0]
        assert isinstance(referenced, AssetsDefinition)
        return referenced
    compute_fn = assets_def.op.compute_fn
    reference = function_reference(getattr(compute_fn, "decorated_fn", compute_fn))

    def add(spec: AssetSpec) -> AssetSpec:
        existing = spec.metadata.get(CODE_REFERENCES_KEY)
        before = []
        if isinstance(existing, CodeReferencesMetadataValue):
            before = list(existing.code_references)
        value = CodeReferencesMetadataValue(code_references=[*before, reference])
        return spec.replace_attributes(metadata={**spec.metadata, CODE_REFERENCES_KEY: value})

    return assets_def.map_asset_specs(add)

"""Assets' code references are the ones Dagster's `with_source_code_references` attaches."""

from __future__ import annotations

import inspect

from dagster import (
    AssetsDefinition,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    asset,
    map_asset_specs,
    with_source_code_references,
)

from assets.factory import build_domain_assets
from hitl_gate.core.domain import available_domains, load_domain
from pipelines.code_references import (
    CODE_REFERENCES_KEY,
    function_reference,
    with_code_references,
)


def _metadata(assets: list) -> dict:
    return {key: a.specs_by_key[key].metadata for a in assets for key in a.keys}


def test_every_shipped_asset_gets_the_reference_dagster_would_give() -> None:
    for name in available_domains():
        assets = build_domain_assets(load_domain(name))
        ours = _metadata(with_code_references(assets))
        dagsters = _metadata(with_source_code_references(assets))
        assert ours == dagsters, name
        for metadata in ours.values():
            (reference,) = metadata[CODE_REFERENCES_KEY].code_references
            assert reference.line_number > 1


def test_a_reference_already_there_is_kept_before_the_new_one() -> None:
    earlier = LocalFileCodeReference(file_path="/elsewhere/stage.py", line_number=7)

    @asset(metadata={CODE_REFERENCES_KEY: CodeReferencesMetadataValue(code_references=[earlier])})
    def stage() -> None:
        return None

    (ours,) = with_code_references([stage])
    (dagsters,) = with_source_code_references([stage])
    assert isinstance(dagsters, AssetsDefinition)
    assert _metadata([ours]) == _metadata([dagsters])
    references = ours.specs_by_key[stage.key].metadata[CODE_REFERENCES_KEY].code_references
    assert references[0] == earlier and references[1].line_number == _decorator_line(stage)


def test_a_decorated_function_is_named_at_its_first_decorator_line() -> None:
    def wrapping(fn):  # noqa: ANN001, ANN202 - a plain decorator keeping `__wrapped__`
        import functools

        @functools.wraps(fn)
        def inner(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return fn(*args, **kwargs)

        return inner

    @wrapping
    @wrapping
    def body() -> int:
        return 1

    reference = function_reference(body)
    assert reference.line_number == inspect.getsourcelines(body)[1]
    assert reference.file_path == __file__


def test_owners_and_references_survive_together() -> None:
    assets = build_domain_assets(load_domain("consumer_credit"))
    owned = map_asset_specs(lambda spec: spec.replace_attributes(owners=["team:x"]), assets)
    for a in with_code_references([a for a in owned if isinstance(a, AssetsDefinition)]):
        for spec in a.specs:
            assert spec.owners == ["team:x"] and CODE_REFERENCES_KEY in spec.metadata


def _decorator_line(stage: AssetsDefinition) -> int:
    fn = stage.op.compute_fn
    return inspect.getsourcelines(getattr(fn, "decorated_fn", fn))[1]

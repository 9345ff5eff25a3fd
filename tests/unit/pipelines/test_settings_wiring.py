"""Settings reach the definitions and resources; signing keys come in through `EnvVar`."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import BackfillPolicy, EnvVar, asset, materialize

from hitl_gate.audit.keys import public_key_hex
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import (
    AUDIT_KEY_ENV,
    DEFAULT_SLICE_ROWS,
    REVIEW_KEY_ENV,
    SEGMENTS_DEFAULT,
    HitlSettings,
)
from pipelines.resources import build_resources

SEED = "5a" * 32


def test_resources_follow_the_settings(tmp_path: Path) -> None:
    settings = HitlSettings.from_environ({"HITL_SLICE_ROWS": "37"}, home=tmp_path)
    resources = build_resources(settings)
    assert resources["io_manager"].slice_rows == 37
    assert resources["audit_db"].seal_rows == 37  # the seal's slices follow the same setting
    assert resources["audit_db"].database == str(tmp_path / "audit.duckdb")
    # Without injected keys the resources use the per-home key files.
    assert resources["audit_db"].signing_key_hex == ""
    assert resources["review"].signing_key_hex == ""
    bare = build_resources(HitlPaths.at(tmp_path))  # paths alone: the default settings
    assert bare["io_manager"].slice_rows == DEFAULT_SLICE_ROWS
    assert bare["audit_db"].seal_rows == DEFAULT_SLICE_ROWS
    # Unset, the setting's default decides; switched off, the single chain.
    assert (resources["audit_db"].segments() is not None) is SEGMENTS_DEFAULT
    off = HitlSettings.from_environ({"HITL_AUDIT_SEGMENTS": "off"}, home=tmp_path)
    assert build_resources(off)["audit_db"].segments() is None
    on = HitlSettings.from_environ({"HITL_AUDIT_SEGMENTS": "on"}, home=tmp_path)
    segments = build_resources(on)["audit_db"].segments()
    assert segments is not None and segments.root == tmp_path / "audit" / "segments"


def test_injected_keys_are_env_vars_never_values(tmp_path: Path) -> None:
    environ = {AUDIT_KEY_ENV: SEED, REVIEW_KEY_ENV: "ab" * 32}
    resources = build_resources(HitlSettings.from_environ(environ, home=tmp_path))
    assert resources["audit_db"].signing_key_hex == EnvVar(AUDIT_KEY_ENV)
    assert resources["review"].signing_key_hex == EnvVar(REVIEW_KEY_ENV)
    assert SEED not in repr(resources["audit_db"])  # the secret stays in the environment


def test_the_audit_key_reaches_a_run_through_the_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitl_gate.audit.keys import load_or_create_signing_key

    monkeypatch.setenv(AUDIT_KEY_ENV, SEED)
    seen: list[str] = []

    @asset(required_resource_keys={"audit_db"})
    def signed(context) -> None:  # Dagster reads the bare parameter as the context
        seen.append(public_key_hex(context.resources.audit_db.signing_key()))

    settings = HitlSettings.from_environ({AUDIT_KEY_ENV: SEED}, home=tmp_path)
    audit_db = build_resources(settings)["audit_db"]
    assert materialize([signed], resources={"audit_db": audit_db}).success
    expected = public_key_hex(load_or_create_signing_key(tmp_path / "other.key", SEED))
    assert seen == [expected]
    assert not (tmp_path / "secrets" / "audit_ed25519.key").exists()  # no file written


def test_definitions_apply_executor_and_backfill_settings(tmp_path: Path) -> None:
    from pipelines.definitions import build_definitions

    settings = HitlSettings.from_environ(
        {"HITL_EXECUTOR": "multiprocess", "HITL_MAX_CONCURRENT": "2", "HITL_BACKFILL_RUNS": "3"},
        home=tmp_path,
    )
    defs = build_definitions(settings)
    job = defs.resolve_job_def("consumer_credit_daily")
    assert job.executor_def.name == "multiprocess"
    graph = defs.resolve_asset_graph()
    policies = {
        graph.get(key).backfill_policy
        for key in graph.get_all_asset_keys()
        if graph.get(key).partitions_def is not None
    }
    assert policies == {BackfillPolicy.multi_run(3)}
    default = build_definitions(HitlSettings(paths=HitlPaths.at(tmp_path)))
    graph = default.resolve_asset_graph()
    assert graph.get(graph.get_all_asset_keys().pop()).backfill_policy in (
        None,
        BackfillPolicy.single_run(),
    )

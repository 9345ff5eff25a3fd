"""A run builds the definitions once: its job's reconstruction borrows them, and only them.

Dagster rebuilds a reconstructable job from `job_for_settings` several times per run; the
runner lends the build it made to those reconstructions while its run lasts. These tests pin
both halves: the loan is used when the settings are equal, and never otherwise (other settings,
or after the run), so a step process or another home always builds its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from dagster import AssetKey

from hitl_gate.app import runner
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings

JOB = "consumer_credit_daily"


def test_a_reconstruction_borrows_the_runs_definitions_only_while_lent(
    hitl_paths: HitlPaths,
) -> None:
    settings = runner.reconstruction_settings(HitlSettings(paths=hitl_paths).to_environ())
    definitions = runner.load_definitions(settings)
    lent_job = definitions.resolve_job_def(JOB)
    with runner._BUILT_FOR_RUN.lending(settings, definitions):
        assert runner.job_for_settings(JOB, settings.to_environ()) is lent_job
    rebuilt = runner.job_for_settings(JOB, settings.to_environ())
    assert rebuilt is not lent_job and rebuilt.name == JOB


def test_other_settings_never_borrow_a_lent_build(hitl_paths: HitlPaths, tmp_path) -> None:
    settings = runner.reconstruction_settings(HitlSettings(paths=hitl_paths).to_environ())
    definitions = runner.load_definitions(settings)
    other = replace(settings, paths=HitlPaths.at(tmp_path / "other"))
    with runner._BUILT_FOR_RUN.lending(settings, definitions):
        job = runner.job_for_settings(JOB, other.to_environ())
    assert job is not definitions.resolve_job_def(JOB)
    audit_db = job.resource_defs["audit_db"].config_schema.default_value  # type: ignore[union-attr]
    assert str(tmp_path / "other") in audit_db["database"]


@pytest.mark.slow  # a real job run
def test_a_run_builds_the_definitions_once(
    hitl_paths: HitlPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[HitlSettings] = []
    load = runner.load_definitions

    def counted(settings: HitlSettings):  # type: ignore[no-untyped-def]
        builds.append(settings)
        return load(settings)

    monkeypatch.setattr(runner, "load_definitions", counted)
    settings = HitlSettings(paths=hitl_paths)
    # The job's first stage alone (nothing landed: an empty day). Dagster still reconstructs
    # the job three times for it (four builds without the loan); the later stages only added
    # their Feast, MLflow and GE stores and imports (the test alone: 10 -> 1.8 CPU s).
    first = AssetKey(["consumer_credit", "raw_cases"])
    result = runner.run_job(settings, JOB, start=date(2018, 1, 5), only=[first])
    assert result.success
    assert {e.step_key for e in result.all_events if e.is_step_success} == {
        "consumer_credit__raw_cases"
    }
    assert len(builds) == 1
    assert runner._BUILT_FOR_RUN._lent == []  # the loan ends with the run

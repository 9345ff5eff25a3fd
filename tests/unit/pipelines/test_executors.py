"""Executor and backfill runs are deployment configuration; the multiprocess executor runs."""

from __future__ import annotations

import os
from datetime import date

import pytest
from dagster import AssetKey, in_process_executor

from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from pipelines.executors import ExecutorConfigError, executor_from_environment


def test_in_process_by_default_and_named_choices() -> None:
    assert executor_from_environment({}) is in_process_executor
    assert executor_from_environment({"HITL_EXECUTOR": "in_process"}) is in_process_executor
    multi = executor_from_environment({"HITL_EXECUTOR": "multiprocess"})
    assert multi.name == "multiprocess" and multi is not in_process_executor
    # any importable executor definition, as a cluster deployment would name dagster_k8s's
    assert (
        executor_from_environment({"HITL_EXECUTOR": "dagster:in_process_executor"})
        is in_process_executor
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HITL_EXECUTOR": "threads"}, "expected in_process, multiprocess or module:attribute"),
        ({"HITL_EXECUTOR": "no_such_module:executor"}, "cannot load it"),
        ({"HITL_EXECUTOR": "os:sep"}, "is not a Dagster executor"),
        ({"HITL_EXECUTOR": "multiprocess", "HITL_MAX_CONCURRENT": "0"}, "whole number >= 1"),
        ({"HITL_EXECUTOR": "multiprocess", "HITL_MAX_CONCURRENT": "two"}, "whole number >= 1"),
    ],
)
def test_bad_executor_settings_fail_naming_the_variable(environ, message) -> None:
    with pytest.raises(ExecutorConfigError, match=message):
        executor_from_environment(environ)


@pytest.mark.e2e
def test_a_day_ingests_with_a_process_per_step(
    hitl_paths: HitlPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multiprocess executor end to end: each step process rebuilds the job from the
    environment and hands its output on through the IO manager (two steps keep it short:
    every step process imports the project again)."""
    from hitl_gate.app.demo_data import prepare_landing
    from hitl_gate.app.runner import load_definitions, run_job

    domain = load_domain("consumer_credit")
    prepare_landing(domain, hitl_paths.landing)
    monkeypatch.setenv("HITL_EXECUTOR", "multiprocess")
    monkeypatch.setenv("HITL_MAX_CONCURRENT", "2")
    defs = load_definitions()
    job = f"{domain.name}_daily"
    assert defs.resolve_job_def(job).executor_def.name == "multiprocess"
    only = [AssetKey([domain.name, "raw_cases"]), AssetKey([domain.name, "validated_cases"])]
    day = date(2018, 1, 2)
    result = run_job(defs, job, start=day, end=day, only=only)
    assert result.success
    processes = {
        event.pid for event in result.all_events if event.is_step_success or event.is_step_start
    }
    assert len(processes) >= 2 and os.getpid() not in processes  # a process of its own each
    stored = hitl_paths.home / "warehouse" / domain.name / "validated_cases"
    assert any(p.is_file() for p in stored.rglob("*")), f"nothing stored under {stored}"


def test_backfill_runs_are_configuration() -> None:
    from dagster import BackfillPolicy

    from assets.partitions import backfill_policy_from_environment

    assert backfill_policy_from_environment({}) == BackfillPolicy.single_run()
    per_day = backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "per_partition"})
    assert per_day == BackfillPolicy.multi_run(1)
    assert backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "7"}).max_partitions_per_run == 7
    with pytest.raises(ValueError, match="HITL_BACKFILL_RUNS"):
        backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "0"})

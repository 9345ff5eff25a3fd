"""Executor and backfill runs are deployment configuration; the multiprocess executor runs."""

from __future__ import annotations

import pytest
from dagster import in_process_executor

from hitl_gate.core.settings import HitlSettings
from pipelines.executors import (
    STEP_PRELOAD,
    ExecutorConfigError,
    executor_for,
    multiprocess_config,
)


def executor_from_environment(environ: dict[str, str]):
    """The executor the definitions would pick for `environ` (settings parsed as the edge does)."""
    return executor_for(HitlSettings.from_environ(environ))


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


def test_multiprocess_steps_fork_from_a_preloaded_forkserver_on_linux() -> None:
    """Each step process starts warm: forked from a server that imported the code location
    and the stages' libraries once (`STEP_PRELOAD`, checked fork-safe by test_fork_safety)."""
    assert multiprocess_config(3) == {
        "max_concurrent": 3,
        "start_method": {"forkserver": {"preload_modules": list(STEP_PRELOAD)}},
    }
    assert "pipelines.definitions" in STEP_PRELOAD


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


def test_backfill_runs_are_configuration() -> None:
    from dagster import BackfillPolicy

    from assets.partitions import backfill_policy_for

    def backfill_policy_from_environment(environ: dict[str, str]) -> BackfillPolicy:
        return backfill_policy_for(HitlSettings.from_environ(environ))

    assert backfill_policy_from_environment({}) == BackfillPolicy.single_run()
    per_day = backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "per_partition"})
    assert per_day == BackfillPolicy.multi_run(1)
    assert backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "7"}).max_partitions_per_run == 7
    with pytest.raises(ValueError, match="HITL_BACKFILL_RUNS"):
        backfill_policy_from_environment({"HITL_BACKFILL_RUNS": "0"})

"""The multiprocess executor end to end (its configuration: tests/unit/pipelines/)."""

from __future__ import annotations

import os
from datetime import date

import pytest
from dagster import AssetKey

from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from tests.fork_server import FORK_SERVER_GROUP, shared_forkserver


@pytest.mark.e2e
@pytest.mark.xdist_group(FORK_SERVER_GROUP)
def test_a_day_ingests_with_a_process_per_step(
    hitl_paths: HitlPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multiprocess executor end to end: each step process rebuilds the job from the
    environment and hands its output on through the IO manager (two steps keep it short:
    every step process imports the project again).

    The steps are forked from this process's forkserver, as the executor asks; it is the one
    the recovery test's killed runs use, started once per worker with a list that holds the
    executor's `STEP_PRELOAD` (tests/fork_server.py)."""
    from hitl_gate.app.demo_data import prepare_landing
    from hitl_gate.app.runner import load_definitions, run_job

    shared_forkserver()
    domain = load_domain("consumer_credit")
    prepare_landing(domain, hitl_paths.landing)
    monkeypatch.setenv("HITL_EXECUTOR", "multiprocess")
    monkeypatch.setenv("HITL_MAX_CONCURRENT", "2")
    settings = HitlSettings.from_environ(os.environ, home=hitl_paths.home)
    defs = load_definitions(settings)
    job = f"{domain.name}_daily"
    assert defs.resolve_job_def(job).executor_def.name == "multiprocess"
    only = [AssetKey([domain.name, "raw_cases"]), AssetKey([domain.name, "validated_cases"])]
    day = date(2018, 1, 2)
    result = run_job(settings, job, start=day, end=day, only=only)
    assert result.success
    processes = {
        event.pid for event in result.all_events if event.is_step_success or event.is_step_start
    }
    assert len(processes) >= 2 and os.getpid() not in processes  # a process of its own each
    stored = hitl_paths.home / "warehouse" / domain.name / "validated_cases"
    assert any(p.is_file() for p in stored.rglob("*")), f"nothing stored under {stored}"

"""Run a domain's jobs in this process against a persistent Dagster instance under the home.

The CLI and the demo use this instead of `dagster job execute`, which would start a process per
step and pay Feast's and MLflow's import cost each time (docs/scaling.md: 52 s vs 7 s). Runs land in
the same instance the Dagster UI reads (`<home>/dagster`), so they show up there.

Runs go through `dagster.execute_job` with a reconstructable job, not `execute_in_process`:
the latter keeps every step's output in memory until the run ends (for `output_for_node`),
which at a million cases a day held every stage's frame at once. Here each output is only in
the IO manager's Parquet files once its step is done, and the job is rebuilt from the same
environment, so the definitions' executor (in process by default) decides how steps run.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    JobDefinition,
    JobExecutionResult,
    build_reconstructable_job,
    execute_job,
)

from hitl_gate.core.home import HOME_ENV, LANDING_ENV, REVIEW_ENV, HitlPaths

# The run tags that make one run cover a range of partitions (single-run backfills). They are
# Dagster's documented tag names; the constants holding them are in a private module
# (`dagster._core.storage.tags`), so the names are written out here.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Step-by-step DEBUG events go to the run log (Dagster UI); the terminal shows warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

DAGSTER_YAML = """\
telemetry:
  enabled: false
"""


def use_paths(paths: HitlPaths) -> None:
    """Point this process (and the definitions it loads) at `paths` and its Dagster instance."""
    os.environ[HOME_ENV] = str(paths.home)
    os.environ[LANDING_ENV] = str(paths.landing)
    os.environ[REVIEW_ENV] = str(paths.review)
    ensure_dagster_home(paths.dagster_home)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)


def ensure_dagster_home(folder: Path) -> None:
    """Create the Dagster home with telemetry off (the deployment is offline)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")


def load_definitions() -> Definitions:
    """The project's definitions, built for the paths currently in the environment."""
    from hitl_gate.core.domain import available_domains, load_domain
    from pipelines.definitions import build_definitions

    return build_definitions(HitlPaths.from_env(), [load_domain(n) for n in available_domains()])


def job_from_environment(job_name: str) -> JobDefinition:
    """The job `job_name` of the definitions the environment points at (reconstruction target)."""
    return load_definitions().resolve_job_def(job_name)


def run_job(
    defs: Definitions,
    job_name: str,
    *,
    start: date | None = None,
    end: date | None = None,
    tags: dict[str, str] | None = None,
    only: list[AssetKey] | None = None,
    run_config: dict | None = None,
) -> JobExecutionResult:
    """Execute `job_name` (or only the assets `only` of it) with the definitions' executor.

    A partitioned job runs the days `start..end` as one run: every asset has a single-run
    backfill policy, so each stage processes the whole range in one step. `defs` must be the
    definitions of the current environment (`load_definitions()`); the job is rebuilt from it
    by name so that no step output stays in memory after its step.
    """
    defs.resolve_job_def(job_name)  # fail here, naming the job, if it does not exist
    run_tags = dict(tags or {})
    if start is not None:
        run_tags[ASSET_PARTITION_RANGE_START_TAG] = start.isoformat()
        run_tags[ASSET_PARTITION_RANGE_END_TAG] = (end or start).isoformat()
    job = build_reconstructable_job(__name__, job_from_environment.__name__, (job_name,))
    with DagsterInstance.get() as instance:
        return execute_job(
            job,
            instance,
            run_config={**QUIET_CONSOLE, **(run_config or {})},
            tags=run_tags,
            raise_on_error=False,
            asset_selection=only,
        )


def raise_for_failure(result: JobExecutionResult, what: str) -> None:
    """Stop with each failing step and its error named when a run did not succeed."""
    if result.success:
        return
    failures = [
        f"  {event.step_key}: {event.event_specific_data.error.message.strip()}"
        for event in result.all_events
        if event.is_step_failure
    ]
    raise SystemExit(f"{what} failed:\n" + "\n".join(failures or ["  (see the Dagster run log)"]))

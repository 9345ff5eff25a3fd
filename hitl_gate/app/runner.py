"""Run a domain's jobs in this process against a persistent Dagster instance under the home.

The CLI and the demo use this instead of `dagster job execute`, which would start a process per
step and pay Feast's and MLflow's import cost each time (docs/scaling.md: 52 s vs 7 s). Runs land in
the same instance the Dagster UI reads (`<home>/dagster`), so they show up there.

Runs execute a reconstructable job (as `dagster.execute_job` does), not `execute_in_process`:
the latter keeps every step's output in memory until the run ends (for `output_for_node`),
which at a million cases a day held every stage's frame at once. Here each output is only in
the IO manager's Parquet files once its step is done, and the job is rebuilt from the same
settings (passed to the reconstruction, never through `os.environ`), so the definitions'
executor (in process by default) decides how steps run. Each run is created with the code
location's origin (`hitl_gate/app/origin.py`), so the Dagster UI lists it under its job.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from dagster import (
    AssetKey,
    DagsterEvent,
    DagsterInstance,
    Definitions,
    JobDefinition,
    JobExecutionResult,
    build_reconstructable_job,
)

# `execute_job` creates its run without a remote origin; its two halves are used instead
# (`create_run_for_job` is public on the instance, `execute_run` lives in this module).
from dagster._core.execution.api import execute_run

from hitl_gate.app.day_range import day_range
from hitl_gate.app.origin import job_origin
from hitl_gate.app.progress import PROGRESS_TAG, live_progress, shows_progress
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings

# The run tags that make one run cover a range of partitions (single-run backfills). They are
# Dagster's documented tag names; the constants holding them are in a private module
# (`dagster._core.storage.tags`), so the names are written out here.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Step events and warnings go to the run log (Dagster UI); the terminal shows nothing of the
# run's own log (its failures carry stack traces): `raise_for_failure` says what failed, in a line.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

# Offline: no telemetry, and no "join the community" sign-up dialog (it asks for an e-mail).
DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""
# The event log keeps its SQLite databases open instead of reopening them for every event
# (`pipelines/event_log_storage.py`): the same files as Dagster's default, a fraction of the cost.
EVENT_LOG_STORAGE = ("pipelines.event_log_storage", "HitlSqliteEventLogStorage")
# The run and schedule databases (Dagster's default places), opened without re-reading Dagster's
# migration scripts each time (`pipelines/instance_storage.py`).
RUN_STORAGE = ("pipelines.instance_storage", "HitlSqliteRunStorage")
SCHEDULE_STORAGE = ("pipelines.instance_storage", "HitlSqliteScheduleStorage")
# Each run's stdout/stderr captured where Dagster's default puts them, mirrored to the terminal
# without a Python watcher process per stream (`pipelines/compute_logs.py`).
COMPUTE_LOGS = ("pipelines.compute_logs", "HitlLocalComputeLogManager")
# Dagster stores a run's planned events, and the materialisations of a ranged step, as one batch
# (one transaction per database in that storage) only when this variable is set: its documented
# opt-in, read by Dagster at each event. A deployment's own value is kept.
EVENT_BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 1000


def dagster_yaml(folder: Path) -> str:
    """The `dagster.yaml` of a new Dagster home in `folder`."""
    import yaml

    home = folder.resolve()
    storage = {
        key: {"module": module, "class": cls, "config": {"base_dir": str(base_dir)}}
        for key, (module, cls), base_dir in (
            ("run_storage", RUN_STORAGE, home / "history"),
            ("event_log_storage", EVENT_LOG_STORAGE, home / "history" / "runs"),
            ("schedule_storage", SCHEDULE_STORAGE, home / "schedules"),
            ("compute_logs", COMPUTE_LOGS, home / "storage"),
        )
    }
    return DAGSTER_YAML + yaml.safe_dump(storage, sort_keys=False)


def ensure_dagster_home(folder: Path) -> None:
    """Create the Dagster home with telemetry and the sign-up dialog off (it is offline).

    An existing `dagster.yaml` is left as it is (a deployment's storage, or an older home's).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        config.write_text(dagster_yaml(folder), encoding="utf-8")


def open_instance(paths: HitlPaths) -> DagsterInstance:
    """The persistent Dagster instance under the home (the one the Dagster UI reads).

    Opened from its folder rather than `DAGSTER_HOME`, so nothing rewrites the environment;
    step processes of a multiprocess run receive the instance from the run itself.
    """
    ensure_dagster_home(paths.dagster_home)
    return DagsterInstance.from_config(str(paths.dagster_home))


def load_definitions(settings: HitlSettings) -> Definitions:
    """The project's definitions, built for `settings` (every declared domain)."""
    from pipelines.definitions import build_definitions

    return build_definitions(settings)


class _BuiltForRun:
    """The definitions `run_job` built, lent to the reconstruction of its job in this process.

    Dagster rebuilds a reconstructable job from its target (`job_for_settings`) when the job
    is built, when its definition is read and when a run's assets are selected: three builds
    of every domain's assets, checks and resources per run, where one gives the same objects.
    A build is lent only while its `run_job` call lasts and only to a reconstruction whose
    settings are equal to the ones it was built from; any other (a step process of the
    multiprocess executor, a run worker, another settings) builds its own, as before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lent: list[tuple[HitlSettings, Definitions]] = []

    @contextmanager
    def lending(self, settings: HitlSettings, definitions: Definitions) -> Iterator[None]:
        entry = (settings, definitions)
        with self._lock:
            self._lent.append(entry)
        try:
            yield
        finally:
            with self._lock:
                self._lent.remove(entry)

    def definitions(self, settings: HitlSettings) -> Definitions:
        with self._lock:
            for lent_settings, definitions in self._lent:
                if lent_settings == settings:
                    return definitions
        return load_definitions(settings)


_BUILT_FOR_RUN = _BuiltForRun()


def reconstruction_settings(settings_environ: dict[str, str]) -> HitlSettings:
    """The settings a reconstruction of a job builds from `settings_environ` in this process."""
    return HitlSettings.from_environ({**os.environ, **settings_environ})


def job_for_settings(job_name: str, settings_environ: dict[str, str]) -> JobDefinition:
    """The job `job_name` of the definitions for `settings_environ` (reconstruction target).

    `settings_environ` is `HitlSettings.to_environ()`: every non-secret variable, so the
    rebuilt definitions match the caller's whatever this process's environment says. Only the
    signing keys come from the environment, as their `EnvVar` resources read them there.
    """
    settings = reconstruction_settings(settings_environ)
    return _BUILT_FOR_RUN.definitions(settings).resolve_job_def(job_name)


def run_job(
    settings: HitlSettings,
    job_name: str,
    *,
    start: date | None = None,
    end: date | None = None,
    tags: dict[str, str] | None = None,
    only: list[AssetKey] | None = None,
    run_config: dict | None = None,
    progress: str | None = None,
) -> JobExecutionResult:
    """Execute `job_name` (or only the assets `only` of it) with the definitions' executor.

    A partitioned job runs the days `start..end` as one run: every asset has a single-run
    backfill policy, so each stage processes the whole range in one step. The job is rebuilt
    from `settings` by name so that no step output stays in memory after its step. With
    `progress` (a label), a terminal shows the run's steps as they go (`app.progress`).
    """
    settings_environ = settings.to_environ()
    built_from = reconstruction_settings(settings_environ)
    definitions = load_definitions(built_from)
    declared = definitions.resolve_job_def(job_name)  # fail here, naming the job
    run_tags = dict(tags or {})
    if start is not None:
        start, end = day_range(start, end)
        require_partitions(declared, job_name, start, end)
        run_tags[ASSET_PARTITION_RANGE_START_TAG] = start.isoformat()
        run_tags[ASSET_PARTITION_RANGE_END_TAG] = end.isoformat()
    with _BUILT_FOR_RUN.lending(built_from, definitions):
        job = build_reconstructable_job(
            __name__,
            job_for_settings.__name__,
            reconstructable_kwargs={"job_name": job_name, "settings_environ": settings_environ},
        )
        job_def = job.get_definition()
        os.environ.setdefault(EVENT_BATCH_ENV, str(EVENT_BATCH_SIZE))
        token = uuid.uuid4().hex
        if progress is not None and shows_progress():
            run_tags[PROGRESS_TAG] = token
        with open_instance(settings.paths) as instance, live_progress(instance, token, progress):
            run = instance.create_run_for_job(
                job_def=job_def,
                run_config={**QUIET_CONSOLE, **(run_config or {})},
                tags={**job_def.run_tags, **run_tags},
                asset_selection=frozenset(only) if only else None,
                job_code_origin=job.get_python_origin(),
                remote_job_origin=job_origin(job_name),
            )
            return execute_run(job, run, instance, raise_on_error=False)


def require_partitions(job: JobDefinition, job_name: str, start: date, end: date) -> None:
    """Stop with one line when `start..end` (in order: `day_range`) leaves the domain's data
    window.

    Dagster would otherwise fail inside the run on a partition key it does not know.
    """
    partitions = job.partitions_def
    if partitions is None:
        return
    keys = partitions.get_partition_keys()
    outside = [d for d in (start, end) if d.isoformat() not in keys]
    if outside:
        window = f"{keys[0]}..{keys[-1]}" if keys else "no days yet"
        raise SystemExit(
            f"{job_name}: {outside[0]} is outside the domain's data window ({window}; "
            "data_window in its domain.yaml)"
        )


def raise_for_failure(result: JobExecutionResult, what: str) -> None:
    """Stop with one line naming the first failing step and its root cause.

    The whole story (every step, stack traces) is in the run's log in the Dagster UI; the
    terminal gets the cause a person acts on, e.g. "training needs materialised features".
    """
    if result.success:
        return
    failures = [event for event in result.all_events if event.is_step_failure]
    if not failures:
        raise SystemExit(f"{what} failed (run {result.run_id}: see its log in the Dagster UI)")
    first = failures[0]
    more = f"; {len(failures) - 1} more step(s) failed" if len(failures) > 1 else ""
    raise SystemExit(
        f"{what} failed at {first.step_key}: {failure_message(first)}{more} "
        f"(run {result.run_id}: its log in the Dagster UI has the details)"
    )


def failure_message(event: DagsterEvent) -> str:
    """The root cause of a step-failure event, on one line (Dagster wraps the user's error)."""
    error = event.step_failure_data.error
    if error is None:
        return "(no error recorded)"
    while error.cause is not None:
        error = error.cause
    lines = [line.strip() for line in error.message.strip().splitlines() if line.strip()]
    return "; ".join(lines) or error.cls_name or "(no message)"

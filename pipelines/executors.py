"""Which Dagster executor runs the steps: chosen by deployment configuration, never by code.

`HITL_EXECUTOR` (read into `HitlSettings`) picks it when the definitions are built (the UI,
`dagster dev`, the CLI and the run workers all build them the same way):

- `in_process` (default): every step of a run in the run's process. The daily graph is a
  chain and its steps are short, so a process per step would mostly pay imports again
  (about 5 s each on a laptop, 13 s for Feast; docs/scaling.md).
- `multiprocess`: a process per step, at most `HITL_MAX_CONCURRENT` at once (default: the
  number of CPU cores). Pays when one run holds independent branches or long steps. Where the
  platform has it (Linux, macOS), each step process is forked from a `forkserver` that
  imported the code location and the stages' libraries once per run (`STEP_PRELOAD`), instead
  of Dagster's default `spawn`, where every step process imports them all again.
- `<module>:<attribute>`: any importable executor definition, e.g.
  `dagster_k8s:k8s_job_executor` or `dagster_celery:celery_executor`. Its settings (image,
  broker, `max_concurrent`) go in the run config's `execution: {config: ...}` section or the
  launchpad, as that executor documents; the package must be installed in the image.

Runs always rebuild the job by name and settings (`hitl_gate.app.runner`), so step processes and
pods reconstruct the same definitions.
"""

from __future__ import annotations

import multiprocessing
import os
from importlib import import_module

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from hitl_gate.core.settings import EXECUTOR_ENV, ExecutorConfigError, HitlSettings
from models.model_format import MODEL_FORMAT_MODULE

__all__ = ["STEP_PRELOAD", "ExecutorConfigError", "executor_for", "multiprocess_config"]

# What the forkserver of a multiprocess run imports once, before it forks the run's step
# processes: the code location (Dagster, Polars, DuckDB, pandera, the project's modules) and
# the libraries its stages import lazily: Great Expectations (the expectation checks), Feast
# (features), scikit-learn, MLflow's sklearn flavour and skops (the champion), openpyxl
# (review workbooks), plotly (the report). Importing them must start no thread pool (a forked
# step would deadlock on it: tests/unit/pipelines/test_fork_safety.py). A module left out only
# costs time (each step process that needs it imports it). skops comes first: its import walks
# every module loaded before it, 836 times (models/model_format.py). `features` comes before
# Feast: it turns off typeguard's import-time instrumentation of Feast (features/runtime_checks.py).
STEP_PRELOAD = (
    MODEL_FORMAT_MODULE,
    "pipelines.definitions",
    "great_expectations",
    "features",
    "feast",
    "mlflow.sklearn",
    "openpyxl",
    "plotly.graph_objects",
)


def multiprocess_config(max_concurrent: int) -> dict[str, object]:
    """The multiprocess executor's config: its concurrency, and step processes forked from a
    preloaded forkserver where the platform has one (else Dagster's default, `spawn`)."""
    config: dict[str, object] = {"max_concurrent": max_concurrent}
    if "forkserver" in multiprocessing.get_all_start_methods():
        config["start_method"] = {"forkserver": {"preload_modules": list(STEP_PRELOAD)}}
    return config


def executor_for(settings: HitlSettings) -> ExecutorDefinition:
    """The executor the settings ask for (see the module docstring); in process by default."""
    choice = settings.executor
    if choice == "in_process":
        return in_process_executor
    if choice == "multiprocess":
        max_concurrent = settings.max_concurrent or os.cpu_count() or 1
        return multiprocess_executor.configured(
            multiprocess_config(max_concurrent), name="multiprocess"
        )
    module_name, _, attribute = choice.partition(":")
    try:
        executor = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r}: cannot load it ({exc})") from exc
    if not isinstance(executor, ExecutorDefinition):
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r} is not a Dagster executor")
    return executor

"""Which Dagster executor runs the steps: chosen by deployment configuration, never by code.

`HITL_EXECUTOR` (read into `HitlSettings`) picks it when the definitions are built (the UI,
`dagster dev`, the CLI and the run workers all build them the same way):

- `in_process` (default): every step of a run in the run's process. The daily graph is a
  chain and its steps are short, so a process per step would mostly pay imports again
  (about 5 s each on a laptop, 13 s for Feast; docs/scaling.md).
- `multiprocess`: a process per step, at most `HITL_MAX_CONCURRENT` at once (default: the
  number of CPU cores). Pays when one run holds independent branches or long steps.
- `<module>:<attribute>`: any importable executor definition, e.g.
  `dagster_k8s:k8s_job_executor` or `dagster_celery:celery_executor`. Its settings (image,
  broker, `max_concurrent`) go in the run config's `execution: {config: ...}` section or the
  launchpad, as that executor documents; the package must be installed in the image.

Runs always rebuild the job by name and settings (`hitl_gate.app.runner`), so step processes and
pods reconstruct the same definitions.
"""

from __future__ import annotations

import os
from importlib import import_module

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from hitl_gate.core.settings import EXECUTOR_ENV, ExecutorConfigError, HitlSettings

__all__ = ["ExecutorConfigError", "executor_for"]


def executor_for(settings: HitlSettings) -> ExecutorDefinition:
    """The executor the settings ask for (see the module docstring); in process by default."""
    choice = settings.executor
    if choice == "in_process":
        return in_process_executor
    if choice == "multiprocess":
        max_concurrent = settings.max_concurrent or os.cpu_count() or 1
        return multiprocess_executor.configured(
            {"max_concurrent": max_concurrent}, name="multiprocess"
        )
    module_name, _, attribute = choice.partition(":")
    try:
        executor = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r}: cannot load it ({exc})") from exc
    if not isinstance(executor, ExecutorDefinition):
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r} is not a Dagster executor")
    return executor

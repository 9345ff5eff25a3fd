"""Which Dagster executor runs the steps: chosen by deployment configuration, never by code.

`HITL_EXECUTOR` picks it when the definitions load (the UI, `dagster dev`, the CLI and the
run workers all load them the same way):

- `in_process` (default): every step of a run in the run's process. The daily graph is a
  chain and its steps are short, so a process per step would mostly pay imports again
  (about 5 s each on a laptop, 13 s for Feast; docs/scaling.md).
- `multiprocess`: a process per step, at most `HITL_MAX_CONCURRENT` at once (default: the
  number of CPU cores). Pays when one run holds independent branches or long steps.
- `<module>:<attribute>`: any importable executor definition, e.g.
  `dagster_k8s:k8s_job_executor` or `dagster_celery:celery_executor`. Its settings (image,
  broker, `max_concurrent`) go in the run config's `execution: {config: ...}` section or the
  launchpad, as that executor documents; the package must be installed in the image.

Runs always rebuild the job by name (`hitl_gate.app.runner`), so step processes and pods reconstruct
the same definitions from the same environment.
"""

from __future__ import annotations

import os
from importlib import import_module

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

EXECUTOR_ENV = "HITL_EXECUTOR"
MAX_CONCURRENT_ENV = "HITL_MAX_CONCURRENT"


class ExecutorConfigError(ValueError):
    """`HITL_EXECUTOR` or `HITL_MAX_CONCURRENT` names something that cannot run steps."""


def executor_from_environment(environ: dict[str, str] | None = None) -> ExecutorDefinition:
    """The executor `HITL_EXECUTOR` asks for (see the module docstring); in process by default."""
    env = os.environ if environ is None else environ
    choice = env.get(EXECUTOR_ENV, "").strip() or "in_process"
    if choice == "in_process":
        return in_process_executor
    if choice == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": _max_concurrent(env.get(MAX_CONCURRENT_ENV, ""))},
            name="multiprocess",
        )
    module_name, _, attribute = choice.partition(":")
    if not module_name or not attribute:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={choice!r}: expected in_process, multiprocess or module:attribute "
            "(e.g. dagster_k8s:k8s_job_executor)"
        )
    try:
        executor = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r}: cannot load it ({exc})") from exc
    if not isinstance(executor, ExecutorDefinition):
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={choice!r} is not a Dagster executor")
    return executor


def _max_concurrent(text: str) -> int:
    if not text.strip():
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ExecutorConfigError(f"{MAX_CONCURRENT_ENV}={text!r}: expected a whole number >= 1")
    return value

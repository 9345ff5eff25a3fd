"""Imported last by the forkserver of `hitl demo`'s domain processes (`DOMAIN_PRELOAD`): work
each domain process would otherwise repeat before its runs, done once in the server.

Every child forked from the server starts with what is made here, as a second run in one process
does; nothing made here depends on the home, the domain or the time, and nothing is left open
(no database, file or thread), so it is safe to fork after:

- MLflow checks a model's requirements against the installed packages when it logs (training)
  or loads (scoring) one, through a map of every installed distribution to its modules
  (`importlib.metadata.packages_distributions`, reading each one's file list), kept for the life
  of the process: about 0.4 CPU s that each domain process paid. The function is MLflow's
  private one (no public way to fill its map).
- A run's new event database is written from a copy Dagster's own code initialised once per
  process (`pipelines.event_log_storage.fresh_run_shard`, about 0.3 CPU s: its migration scripts
  and tables), which each domain process made for its first run.

The tests' forkserver preloads this list too (tests/fork_server.py), so the recovery test's
killed runs start with both (2026-12-06: its 14 killed runs 25.7 -> 22.7 CPU s). MLflow's blank
store (`models.mlflow_store.blank_store`) is not made here: one process per new home needs it
(the first to open the home's registry, under its lock), so the server would only take it over
from that child, and pay it for nothing on a home that has its registry.
"""

from __future__ import annotations

from mlflow.utils.requirements_utils import _init_packages_to_modules_map

from pipelines.event_log_storage import fresh_run_shard

_init_packages_to_modules_map()
fresh_run_shard()

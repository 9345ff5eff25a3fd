"""Imported by the tests' forkserver (`preload()` in tests/fork_server.py): work
every killed run would otherwise repeat before its stage, done once in the server.

MLflow checks a loaded model's requirements against the installed packages: it maps every
installed distribution to its modules (`importlib.metadata.packages_distributions`, reading
each one's file list), kept for the life of the process. A fresh process per killed run paid it
at every run that reached `risk_scores` (about 0.7 s of CPU each, a fifth of such a run); filled
here, each run forked from the server starts with the map, and loads and checks the model as
before. The function is MLflow's private one (no public way to fill its map).

Each run's new event database is written from a copy Dagster's own code initialised once per
process (`pipelines.event_log_storage.fresh_run_shard`, about 0.25 s of CPU: its migration
scripts and tables); made here, every killed run starts its run with it, as a second run in
one process does (2026-12-06: the 14 killed runs 25.7 -> 22.7 s of CPU).
"""

from __future__ import annotations

from mlflow.utils.requirements_utils import _init_packages_to_modules_map

from pipelines.event_log_storage import fresh_run_shard

_init_packages_to_modules_map()
fresh_run_shard()

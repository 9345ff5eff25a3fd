"""Imported by the recovery test's forkserver (`PRELOAD` in tests/e2e/test_recovery.py): work
every killed run would otherwise repeat before its stage, done once in the server.

MLflow checks a loaded model's requirements against the installed packages: it maps every
installed distribution to its modules (`importlib.metadata.packages_distributions`, reading
each one's file list), kept for the life of the process. A fresh process per killed run paid it
at every run that reached `risk_scores` (about 0.7 s of CPU each, a fifth of such a run); filled
here, each run forked from the server starts with the map, and loads and checks the model as
before. The function is MLflow's private one (no public way to fill its map).
"""

from __future__ import annotations

from mlflow.utils.requirements_utils import _init_packages_to_modules_map

_init_packages_to_modules_map()

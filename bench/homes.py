"""Copies of a built bench home that run as themselves, not as the home they were copied from.

A built home names itself by absolute path in its configuration files: Dagster's
`dagster.yaml` (the run, event log and schedule storages, the compute logs), Feast's
`feature_store.yaml` (registry, online store), SoftHSM's `softhsm2.conf` (the signing token),
Great Expectations' `great_expectations.yml` and the replica's `views.sql`. A plain `cp -a`
keeps those paths, so a run on the copy wrote its events into, and read features and keys
from, the original home (or failed once it was deleted). Dagster takes no path relative to
its home in `dagster.yaml` (each storage's `base_dir` is a plain or `env:` string; the project
opens the instance from its folder, not from `DAGSTER_HOME`), so the copy's files are
rewritten instead: every occurrence of the home the files name is replaced by the copy's path.
What stays: MLflow's own database keeps the artifact locations it recorded (binary, read only
by scoring); reading them needs the original home, as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

# The files under a home that name it (see the module docstring).
NAMING_FILES = (
    "dagster/dagster.yaml",
    "feast/feature_store.yaml",
    "secrets/softhsm/softhsm2.conf",
    "gx/great_expectations.yml",
    "replica/views.sql",
)


def named_home(home: Path) -> Path:
    """The home `home`'s `dagster.yaml` names (where its run storage is): `home` itself unless
    it is a copy not yet repointed."""
    from hitl_gate.core.home import HitlPaths

    config = HitlPaths.at(home).dagster_home / "dagster.yaml"
    storage = yaml.safe_load(config.read_text(encoding="utf-8"))["run_storage"]["config"]
    # <home>/dagster/history: runner.dagster_yaml's layout
    return Path(storage["base_dir"]).parent.parent


def repoint_home(home: Path) -> bool:
    """Make a copied home name itself in `NAMING_FILES`; return whether anything changed
    (False for a home that already does, or that has no `dagster.yaml` yet)."""
    from hitl_gate.core.home import HitlPaths

    if not (HitlPaths.at(home).dagster_home / "dagster.yaml").exists():
        return False
    home = home.resolve()
    old = named_home(home)
    if old == home:
        return False
    changed = False
    for name in NAMING_FILES:
        path = home / name
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        # A path is the old home followed by a separator: `/x/p1m` is not a prefix of `/x/p1m2`.
        new = text.replace(f"{old}/", f"{home}/")
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed = True
    return changed


def copy_home(source: Path, target: Path) -> Path:
    """`source` (and its witness folder beside it, when there is one) copied to `target`
    (replacing what is there), the copy repointed to itself; returns `target`."""
    from hitl_gate.core.home import HitlPaths

    witness = HitlPaths.at(source).witness_dir, HitlPaths.at(target).witness_dir
    for src, dst in ((source, target), witness):
        shutil.rmtree(dst, ignore_errors=True)
        if src.exists():
            shutil.copytree(src, dst, symlinks=True)
    repoint_home(target)
    return target


def prepared_home(home: Path, pristine: Path | None) -> Path:
    """The home a bench run uses: `pristine` restored onto `home` when given (`copy_home`),
    else `home` repointed to itself if it is a copy (`cp -a`) that still names another."""
    if pristine is not None:
        return copy_home(pristine, home)
    repoint_home(home)
    return home

"""Where the model registry lives: one SQLite tracking store plus a local artefact folder.

Both sit under a single `mlflow_dir` (normally `HitlPaths.mlflow_dir`), so a test or a second
installation gets its own registry just by pointing at another folder. `mlflow` is imported
inside the functions: it costs about 5 s and most callers of this package never need it.
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.core.file_lock import exclusive_lock
from hitl_gate.core.new_database import place_new_database

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_PREFIX = "hitl-gate/"
# MLflow's experiment tags: the description its UI shows, and the kind of work, which makes
# the UI open the experiment on its runs (classic ML) instead of the GenAI traces view.
DESCRIPTION_TAG = "mlflow.note.content"
KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"
TABLES_LOCK_FILE = ".tables.lock"
DATABASE_FILE = "mlflow.db"
_TABLES_READY: set[Path] = set()  # folders whose stores this process opened (`configure`)


@dataclass(frozen=True)
class ExperimentSpec:
    """One domain's experiment: every training run of its model, with a description."""

    name: str
    description: str
    model_description: str  # the registered model's, shown on its registry page


def domain_experiment(domain: str, description: str, model_name: str) -> ExperimentSpec:
    """`hitl-gate/<domain>`: the experiment of one domain's training runs, and the texts the
    MLflow UI shows for it and for the domain's registered model."""
    governance = (
        "Versions move to `champion` (decides) or `challenger` (scored in shadow) only through "
        "`hitl model promote`, a model owner's signed act recorded in the audit database; "
        "scoring refuses an alias moved any other way (MLflow UI included)."
    )
    return ExperimentSpec(
        name=f"{EXPERIMENT_PREFIX}{domain}",
        description=(
            f"Training runs of `{model_name}`, the model of the {domain} domain of hitl-gate. "
            f"{description.strip()}\n\nEach run logs its parameters, metrics, calibration, "
            f"reference bins and model card. {governance}"
        ),
        model_description=(
            f"Probability of a bad outcome for the {domain} domain of hitl-gate. "
            f"{description.strip()}\n\nEach version's description is its model card. "
            f"{governance}"
        ),
    )


def tracking_uri(mlflow_dir: Path) -> str:
    """The SQLite URI of the tracking and registry store inside `mlflow_dir`."""
    return _sqlite_uri(Path(mlflow_dir).resolve() / DATABASE_FILE)


def _sqlite_uri(database: Path) -> str:
    return f"sqlite:///{database.as_posix()}"


def artifact_root(mlflow_dir: Path) -> Path:
    """The folder that holds every run's and model's artefacts."""
    return Path(mlflow_dir).resolve() / "artifacts"


def configure(mlflow_dir: Path) -> MlflowClient:
    """Point MLflow at `mlflow_dir`: the global tracking and registry URIs, and a client.

    The global URIs are set because `mlflow.start_run` and `log_model` read them.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow_dir = Path(mlflow_dir).resolve()
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(mlflow_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow_dir in _TABLES_READY:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # MLflow creates a store's tables (its migrations) and its default experiment the first
    # time a process opens an empty database (the tracking store as the client is made, the
    # registry store on first use), with nothing between processes: two domains' runs on a
    # fresh home (two schedules, or `hitl demo` running domains side by side) would both run
    # them. So each process opens its first stores under a lock file; after that the tables
    # exist, and later opens only check so. A new database is first written from the blank
    # store (`blank_store`), so its tables are not migrated again for every folder.
    with exclusive_lock(mlflow_dir / TABLES_LOCK_FILE):
        database = mlflow_dir / DATABASE_FILE
        if not database.exists():
            place_new_database(database, blank_store())
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_registered_models(max_results=1)  # the registry store, created on use
    _TABLES_READY.add(mlflow_dir)
    return client


@functools.cache
def blank_store() -> bytes:
    """A tracking and registry database as MLflow makes it before a store first opens it, made
    once per process.

    Opening a store on an empty database runs MLflow's own `_initialize_tables` (its initial
    tables, then every alembic migration: about 1.1 CPU s per new folder), then adds the
    default experiment. Only the first is done here, by that same function on a new file in a
    private temporary folder; the file holds MLflow's tables, its `alembic_version` and the
    rows its migrations insert (the default workspace), and nothing that depends on where or
    when it is used. The default experiment (its artefact location is taken from the working
    directory, its creation time from the clock) is added by MLflow when the store is opened
    on the copy, as on a database it migrated itself (tests/unit/models/test_blank_store.py
    compares the two).
    """
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine
    from sqlalchemy import event

    with tempfile.TemporaryDirectory(prefix="hitl-mlflow-blank-") as folder:
        database = Path(folder) / DATABASE_FILE
        engine = create_sqlalchemy_engine(_sqlite_uri(database))
        event.listen(engine, "connect", _unsynced)  # before the engine's first connection
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()  # the last connection closed: nothing left in a journal
        return database.read_bytes()


def _unsynced(connection: sqlite3.Connection, _record: object) -> None:
    """No journal file and no `fsync` on the blank store's private file.

    Each of MLflow's ~65 migrations commits, and each commit of a rollback-journal database
    syncs the journal and the file: on a busy disk that was 3-9 s of waiting for 1.4 s of CPU
    (2026-12-07). The file is read once into memory and deleted, so a crash can lose nothing
    that must last. Neither setting is stored in the file (a journal mode of the rollback kind
    leaves its header as it is; `test_blank_store` compares its settings and contents)."""
    connection.execute("PRAGMA journal_mode = MEMORY")
    connection.execute("PRAGMA synchronous = OFF")


def experiment_id(client: MlflowClient, mlflow_dir: Path, spec: ExperimentSpec) -> str:
    """The id of `spec`'s experiment, created (or its tags brought up to date) as needed.

    The artefact location is fixed when the experiment is created; without it MLflow would
    write `./mlruns` into the working directory. Every experiment shares the one artefact
    folder, so a run's files are at `<artifacts>/<run id>/` whatever its domain.
    """
    tags = {DESCRIPTION_TAG: spec.description, KIND_TAG: CLASSIC_ML}
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        artifacts = artifact_root(mlflow_dir)
        artifacts.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(spec.name, artifact_location=artifacts.as_uri(), tags=tags)
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id

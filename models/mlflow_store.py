"""Where the model registry lives: one SQLite tracking store plus a local artefact folder.

Both sit under a single `mlflow_dir` (normally `HitlPaths.mlflow_dir`), so a test or a second
installation gets its own registry just by pointing at another folder. `mlflow` is imported
inside the functions: it costs about 5 s and most callers of this package never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_NAME = "hitl-gate"


def tracking_uri(mlflow_dir: Path) -> str:
    """The SQLite URI of the tracking and registry store inside `mlflow_dir`."""
    return f"sqlite:///{(Path(mlflow_dir).resolve() / 'mlflow.db').as_posix()}"


def artifact_root(mlflow_dir: Path) -> Path:
    """The folder that holds every run's and model's artefacts."""
    return Path(mlflow_dir).resolve() / "artifacts"


def configure(mlflow_dir: Path) -> MlflowClient:
    """Point MLflow at `mlflow_dir` and make sure the 'hitl-gate' experiment exists.

    The artefact location is fixed when the experiment is created; without it MLflow would
    write `./mlruns` into the working directory. The global tracking and registry URIs are set
    too, because `mlflow.start_run` and `log_model` read them.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow_dir = Path(mlflow_dir).resolve()
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(mlflow_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(EXPERIMENT_NAME) is None:
        artifacts = artifact_root(mlflow_dir)
        artifacts.mkdir(parents=True, exist_ok=True)
        client.create_experiment(EXPERIMENT_NAME, artifact_location=artifacts.as_uri())
    return client


def experiment_id(client: MlflowClient) -> str:
    """The id of the 'hitl-gate' experiment (call `configure` first)."""
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        raise LookupError(f"experiment '{EXPERIMENT_NAME}' missing: call configure() first")
    return experiment.experiment_id

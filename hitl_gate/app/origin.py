"""The code location a run belongs to, as the Dagster UI knows it (from `workspace.yaml`).

The UI lists a job's runs by the repository label stored on each run (`.dagster/repository`,
`<repository>@<location>`), which Dagster writes only for runs that carry a remote job origin.
Runs the CLI and the demo execute in their own process get the origin `dagster dev -w
workspace.yaml` gives the same code location, so they show up on their job's page and can be
re-executed from the UI. Reading `workspace.yaml` starts no code server.
"""

from __future__ import annotations

from pathlib import Path

# Dagster exports no public constructor for a run's remote origin: these are the classes and
# loader the webserver itself uses (Dagster 1.13), named here in one place.
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from hitl_gate.core.domain import PROJECT_ROOT

WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"


def repository_origin(workspace: Path = WORKSPACE_FILE) -> RemoteRepositoryOrigin:
    """The origin of the one `Definitions` of the workspace's one code location."""
    locations = location_origins_from_yaml_paths([str(workspace)])
    if len(locations) != 1:
        raise ValueError(f"{workspace} must declare exactly one code location: {len(locations)}")
    return RemoteRepositoryOrigin(locations[0], SINGLETON_REPOSITORY_NAME)


def job_origin(job_name: str, workspace: Path = WORKSPACE_FILE) -> RemoteJobOrigin:
    """The remote origin of job `job_name` in the workspace's code location."""
    return repository_origin(workspace).get_job_origin(job_name)

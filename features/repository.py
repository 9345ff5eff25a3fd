"""The whole feature repository of one Feast project: every registered domain's objects.

The domains of a home share one registry and one project, so what `feast plan` and `feast
apply` compare with the registry must be every domain's objects (entities, sources, views, the
declared service and one service per model version), never one domain's alone: a partial
repository reads to Feast as "delete the rest". The generated `feature_repo.py`
(`features.config.write_feature_store_yaml`) calls `repository_objects`; tests call it too.
Imports Feast (through `features.definitions`).
"""

from __future__ import annotations

from pathlib import Path

from feast import FeatureView

from features.config import feature_source_dir, registered_domain_files
from features.definitions import feature_objects
from features.services import build_model_service, read_manifest
from hitl_gate.core.domain import load_domain_file


def repository_objects(feast_dir: Path, project: str) -> list:
    """Every object of every domain registered under `feast_dir` in `project`, domain by domain.

    Per domain: `feature_objects` of its declaration, then the service of each model version
    applied to the store (`model_services_<domain>.json`), oldest first.
    """
    root = Path(feast_dir).resolve()
    objects: list = []
    for path in registered_domain_files(root, project):
        domain = load_domain_file(path)
        declared = feature_objects(domain, feature_source_dir(domain, root))
        views = [o for o in declared if isinstance(o, FeatureView)]
        services = [build_model_service(domain, views, ref) for ref in read_manifest(root, domain)]
        objects += [*declared, *services]
    return objects

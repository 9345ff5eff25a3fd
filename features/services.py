"""One Feast feature service per registered model version: which features served which model.

A decision records the feature service its features were retrieved through, next to the
digest of the values. Naming that service after the model version (`<model>_v<N>`) makes the
record say both "which feature definitions" and "for which model" without a join. Each
service is described, owned and tagged with the version's family, MLflow run and the
columns the model reads, and is rebuilt from two sources only: the domain declaration (the
views) and a `ModelVersionRef` read from the MLflow registry. Applying is idempotent.

The applied refs are also kept in `<feast_dir>/model_services_<domain>.json`, which the generated
`feature_repo.py` reads, so `feast plan` from the CLI shows the same services instead of
proposing to delete them. No Feast import at module level.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.core.domain import DomainConfig

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView


def manifest_path(feast_dir: Path, domain: DomainConfig) -> Path:
    """One manifest per domain: domains may share a Feast registry (one project)."""
    return Path(feast_dir).resolve() / f"model_services_{domain.name}.json"


@dataclass(frozen=True)
class ModelVersionRef:
    """What a feature service needs to know about one registered model version."""

    model_name: str
    version: str
    family: str
    run_id: str
    inputs: tuple[str, ...]

    @property
    def service_name(self) -> str:
        return model_service_name(self.model_name, self.version)


def model_service_name(model_name: str, version: str) -> str:
    """`<model>_v<version>`: the name a decision records for its feature service."""
    return f"{model_name}_v{version}"


def foreign_services(
    used: list[str], domain: DomainConfig, model_name: str, version: str
) -> list[str]:
    """Services in `used` that may not feed a decision by `model_name` version `version`.

    Allowed: that version's own service, and the declared service (features retrieved
    before any model existed, i.e. the very first run). Anything else means the champion
    alias moved between retrieving the features and scoring them.
    """
    allowed = {domain.features.service, model_service_name(model_name, version)}
    return sorted(set(used) - allowed)


def read_manifest(feast_dir: Path, domain: DomainConfig) -> list[ModelVersionRef]:
    """The domain's model versions whose services were applied to this store, oldest first."""
    path = manifest_path(feast_dir, domain)
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [ModelVersionRef(**{**row, "inputs": tuple(row["inputs"])}) for row in rows]


def _write_manifest(feast_dir: Path, domain: DomainConfig, refs: list[ModelVersionRef]) -> None:
    path = manifest_path(feast_dir, domain)
    ordered = sorted({r.service_name: r for r in refs}.values(), key=lambda r: int(r.version))
    rows = [{**asdict(r), "inputs": list(r.inputs)} for r in ordered]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def build_model_service(
    domain: DomainConfig, views: list[FeatureView], ref: ModelVersionRef
) -> FeatureService:
    """The feature service of one model version: every declared view, tagged with the version.

    It serves the whole declaration, not only the columns the model reads: the policy and the
    reviewers act on the other features in the same decision (e.g. `loan_to_income`), and the
    digest recorded with the decision covers all of them. The model's own columns are in the
    `model_inputs` tag, so the registry answers "which features does v3 read" too.
    """
    from feast import FeatureService

    from features.definitions import common_tags

    return FeatureService(
        name=ref.service_name,
        features=list(views),
        description=(
            f"Features served with model {ref.model_name} version {ref.version} "
            f"({ref.family}, MLflow run {ref.run_id}); the model reads {', '.join(ref.inputs)}."
        ),
        owner=domain.features.owner,
        tags={
            **common_tags(domain),
            "model": ref.model_name,
            "model_version": ref.version,
            "model_family": ref.family,
            "mlflow_run_id": ref.run_id,
            "model_inputs": ",".join(ref.inputs),
        },
    )


def ensure_model_service(store: FeatureStore, domain: DomainConfig, ref: ModelVersionRef) -> str:
    """Apply the feature service of `ref` unless the registry already holds it; its name.

    Unknown model inputs (a version trained on a feature the declaration no longer has) fail
    here, naming them: such a version cannot be served by the current feature definitions.
    """
    from features.config import feature_source_dir
    from features.definitions import feature_objects
    from features.store import registry_is_current, registry_turn

    unknown = sorted(set(ref.inputs) - set(domain.features.names))
    if unknown:
        raise ValueError(
            f"model {ref.model_name} v{ref.version} reads features {unknown} that the "
            f"{domain.name} declaration does not serve"
        )
    root = Path(store.repo_path)
    views = [o for o in feature_objects(domain, feature_source_dir(domain, root)) if _is_view(o)]
    service = build_model_service(domain, views, ref)
    with registry_turn(root):
        if not registry_is_current(store, [service]):
            store.apply([service])
    known = read_manifest(root, domain)
    if ref not in known:
        _write_manifest(root, domain, [*known, ref])
    return service.name


def _is_view(obj: object) -> bool:
    from feast import FeatureView

    return isinstance(obj, FeatureView)

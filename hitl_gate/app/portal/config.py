"""The portal's configuration for a home: its folders, keys, domains and `portal.yaml`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hitl_gate.app.portal.settings import PortalSettings, PortalSettingsError, oidc_from_mapping
from hitl_gate.app.portal.verdicts import IntakePlace
from hitl_gate.app.portal.web import PortalConfig
from hitl_gate.audit.witness import WitnessConfig
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from hitl_gate.review.intake.sealing import IntakeSealer, intake_sealer

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

PORTAL_YAML = "portal.yaml"
PORTAL_KEY = "portal_ed25519"


def portal_key_path(secrets_dir: Path) -> Path:
    """The portal's own SSH key (it signs its attestations; registered `*:portal`)."""
    return secrets_dir / "portal" / PORTAL_KEY


def load_portal_settings(home: Path, host: str, port: int) -> PortalSettings:
    """Settings from `<home>/portal.yaml` (optional; `oidc:` and the guards), host and port."""
    import yaml

    raw: dict[str, object] = {}
    path = home / PORTAL_YAML
    if path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise PortalSettingsError(f"{path}: not a mapping")
        raw = loaded
    oidc = raw.pop("oidc", None)
    known = set(PortalSettings.__dataclass_fields__) - {"host", "port", "oidc"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PortalSettingsError(f"{path}: unknown settings {unknown}")
    return PortalSettings(
        host=host,
        port=port,
        oidc=oidc_from_mapping(oidc) if isinstance(oidc, dict) else None,
        **{name: int(str(value)) for name, value in raw.items()},
    )


def portal_sealer(settings: HitlSettings, signer: CheckpointSigner) -> IntakeSealer:
    """The seal of the verdicts the portal takes in, on the connection that wrote them (run id
    `portal:intake`; `review.intake.sealing`): without it every other seal refuses them."""
    paths = settings.paths
    witness = WitnessConfig(paths.witness_dir, settings.tsa_url)
    return intake_sealer(signer, paths.checkpoints_dir, witness, "portal")


def portal_config(
    paths: HitlPaths,
    domains: Mapping[str, DomainConfig],
    *,
    host: str,
    port: int,
    seal: IntakeSealer | None = None,
) -> PortalConfig:
    """The portal of one home: review folders, review key, portal key, settings, and the
    seal of the verdicts it takes in (`review.intake.sealing`)."""
    from hitl_gate.app.portal.contributions import ContributionSource
    from hitl_gate.review.signing import load_or_create_key

    return PortalConfig(
        audit_db=paths.audit_db,
        secrets_dir=paths.secrets_dir,
        place=IntakePlace(
            batches_dir=paths.review_batches,
            archive_dir=paths.review_archive,
            review_key=load_or_create_key(paths.secrets_dir),
            portal_key=portal_key_path(paths.secrets_dir),
            seal=seal,
        ),
        domains=dict(domains),
        settings=load_portal_settings(paths.home, host, port),
        contributions=ContributionSource(paths.warehouse, paths.mlflow_dir),
    )

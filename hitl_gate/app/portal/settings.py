"""The portal's typed settings: where it listens, how sign-in is guarded, and optional OIDC.

Chosen once (`hitl portal serve` builds them from its options and `<home>/portal.yaml`), then
handed to the app; nothing in the portal reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class PortalSettingsError(ValueError):
    """A portal setting that cannot work (named, with the reason)."""


@dataclass(frozen=True)
class OidcSettings:
    """Sign-in through the bank's identity provider (OpenID Connect, authorization code flow).

    `subjects` maps the provider's stable subject (`sub`) to a person of the registry: the
    registry stays the one source of who may act; an unmapped subject is refused.
    """

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    metadata_url: str = ""  # default: <issuer>/.well-known/openid-configuration
    scopes: tuple[str, ...] = ("openid",)
    subjects: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("issuer", "client_id", "client_secret", "redirect_uri"):
            if not str(getattr(self, name)).strip():
                raise PortalSettingsError(f"oidc.{name} is required")
        for name in ("issuer", "redirect_uri"):
            value = str(getattr(self, name))
            if not value.startswith("https://") and not _local_url(value):
                raise PortalSettingsError(f"oidc.{name} must be https:// (got {value!r})")
        if "openid" not in self.scopes:
            raise PortalSettingsError("oidc.scopes must include 'openid'")
        if not self.subjects:
            raise PortalSettingsError("oidc.subjects maps no provider subject to a person")

    @property
    def discovery_url(self) -> str:
        return self.metadata_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def person_for(self, subject: str) -> str | None:
        """The registry person id the provider's subject is mapped to (None: refused)."""
        return self.subjects.get(subject)


def _local_url(value: str) -> bool:
    rest = value.split("://", 1)[-1]
    return value.startswith("http://") and rest.split("/", 1)[0].split(":")[0] in LOCAL_HOSTS


@dataclass(frozen=True)
class PortalSettings:
    """Listening address, session and sign-in guards (all with safe laptop defaults)."""

    host: str = "127.0.0.1"
    port: int = 8765
    session_minutes: int = 480
    idle_minutes: int = 30
    lockout_failures: int = 5  # failed sign-ins in a row that lock the person out
    lockout_minutes: int = 15
    sign_in_per_minute: int = 10  # attempts per client per minute (rate limit)
    due_soon_hours: int = 4  # a case due within this is shown as "due soon"
    oidc: OidcSettings | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise PortalSettingsError(f"port {self.port} is not a TCP port")
        for name in ("session_minutes", "idle_minutes", "lockout_failures", "lockout_minutes"):
            if int(getattr(self, name)) <= 0:
                raise PortalSettingsError(f"{name} must be positive")
        if self.sign_in_per_minute <= 0:
            raise PortalSettingsError("sign_in_per_minute must be positive")

    @property
    def local(self) -> bool:
        """Bound to this machine only (then cookies may go over plain http)."""
        return self.host in LOCAL_HOSTS

    @property
    def lockout(self) -> timedelta:
        return timedelta(minutes=self.lockout_minutes)


def oidc_from_mapping(raw: dict[str, object]) -> OidcSettings:
    """`OidcSettings` from the `oidc:` section of `portal.yaml` (unknown keys refused)."""
    known = {"issuer", "client_id", "client_secret", "redirect_uri", "metadata_url", "scopes"}
    unknown = sorted(set(raw) - known - {"subjects"})
    if unknown:
        raise PortalSettingsError(f"oidc: unknown settings {unknown}")
    subjects = raw.get("subjects") or {}
    if not isinstance(subjects, dict):
        raise PortalSettingsError("oidc.subjects must map provider subjects to person ids")
    scopes = raw.get("scopes") or ["openid"]
    if not isinstance(scopes, list):
        raise PortalSettingsError("oidc.scopes must be a list")
    return OidcSettings(
        issuer=str(raw.get("issuer", "")),
        client_id=str(raw.get("client_id", "")),
        client_secret=str(raw.get("client_secret", "")),
        redirect_uri=str(raw.get("redirect_uri", "")),
        metadata_url=str(raw.get("metadata_url", "")),
        scopes=tuple(str(s) for s in scopes),
        subjects={str(k): str(v) for k, v in subjects.items()},
    )

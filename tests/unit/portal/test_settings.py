"""Portal settings: safe defaults, `portal.yaml`, and the OIDC configuration checked offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.app.portal.config import load_portal_settings
from hitl_gate.app.portal.settings import (
    OidcSettings,
    PortalSettings,
    PortalSettingsError,
    oidc_from_mapping,
)

GOOD = {
    "issuer": "https://login.bank.example/realms/credit",
    "client_id": "hitl-portal",
    "client_secret": "s3cret",
    "redirect_uri": "https://review.bank.example/oidc/callback",
    "subjects": {"9b1f-c2": "analyst-7"},
}


def test_defaults_bind_to_localhost_only() -> None:
    settings = PortalSettings()
    assert settings.host == "127.0.0.1" and settings.local
    assert not PortalSettings(host="0.0.0.0").local


def test_oidc_maps_only_listed_subjects_to_registry_people() -> None:
    oidc = oidc_from_mapping(dict(GOOD))
    assert oidc.person_for("9b1f-c2") == "analyst-7"
    assert oidc.person_for("analyst-7") is None  # a subject is never taken as a person id
    assert oidc.discovery_url.endswith("/realms/credit/.well-known/openid-configuration")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": ""}, "issuer is required"),
        ({"issuer": "http://login.bank.example"}, "must be https"),
        ({"redirect_uri": "http://review.bank.example/cb"}, "must be https"),
        ({"scopes": ["profile"]}, "must include 'openid'"),
        ({"subjects": {}}, "maps no provider subject"),
        ({"client_secret": " "}, "client_secret is required"),
        ({"tenant": "x"}, "unknown settings"),
    ],
)
def test_oidc_configuration_mistakes_are_refused(change: dict, message: str) -> None:
    with pytest.raises(PortalSettingsError, match=message):
        oidc_from_mapping({**GOOD, **change})


def test_plain_http_is_allowed_for_a_local_provider() -> None:
    local = {**GOOD, "issuer": "http://127.0.0.1:8080", "redirect_uri": "http://localhost:8765/cb"}
    assert isinstance(oidc_from_mapping(local), OidcSettings)


def test_portal_yaml_sets_the_guards_and_oidc(tmp_path: Path) -> None:
    (tmp_path / "portal.yaml").write_text(
        "lockout_failures: 3\nlockout_minutes: 60\noidc:\n"
        "  issuer: https://idp.example\n  client_id: c\n  client_secret: s\n"
        "  redirect_uri: https://portal.example/oidc/callback\n  subjects: {abc: analyst-7}\n",
        encoding="utf-8",
    )
    settings = load_portal_settings(tmp_path, "127.0.0.1", 8765)
    assert settings.lockout_failures == 3 and settings.lockout_minutes == 60
    assert settings.oidc is not None and settings.oidc.person_for("abc") == "analyst-7"


def test_portal_yaml_unknown_or_bad_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "portal.yaml").write_text("lockout_failure: 3\n", encoding="utf-8")
    with pytest.raises(PortalSettingsError, match="unknown settings"):
        load_portal_settings(tmp_path, "127.0.0.1", 8765)
    with pytest.raises(PortalSettingsError, match="positive"):
        PortalSettings(lockout_failures=0)

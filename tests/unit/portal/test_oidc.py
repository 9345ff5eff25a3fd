"""OpenID Connect, offline: subject mapping to registry people, issuer check, identity
reference, and the routes when OIDC is not configured."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hitl_gate.app.portal.oidc import OidcRefused, identity_reference, person_for_claims
from hitl_gate.app.portal.settings import oidc_from_mapping
from hitl_gate.identity.registry import Person, Registry

NOW = datetime(2026, 1, 5, tzinfo=UTC)
OIDC = oidc_from_mapping(
    {
        "issuer": "https://idp.bank.example",
        "client_id": "portal",
        "client_secret": "s",
        "redirect_uri": "https://portal.bank.example/oidc/callback",
        "subjects": {"sub-7": "analyst-7", "sub-gone": "leaver"},
    }
)


def _person(person_id: str, revoked: datetime | None = None) -> Person:
    return Person(person_id, person_id, (), (), datetime(2025, 1, 1, tzinfo=UTC), revoked)


REGISTRY = Registry(
    people={
        "analyst-7": _person("analyst-7"),
        "leaver": _person("leaver", revoked=datetime(2025, 6, 1, tzinfo=UTC)),
    }
)


def test_a_mapped_subject_signs_in_as_its_person() -> None:
    claims = {"iss": "https://idp.bank.example/", "sub": "sub-7"}
    assert person_for_claims(OIDC, claims, REGISTRY, NOW) == "analyst-7"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": "https://idp.bank.example", "sub": "analyst-7"}, "not mapped"),
        ({"iss": "https://idp.bank.example", "sub": "sub-gone"}, "not an active person"),
        ({"iss": "https://evil.example", "sub": "sub-7"}, "issued by"),
    ],
)
def test_unmapped_inactive_or_foreign_identities_are_refused(claims: dict, message: str) -> None:
    with pytest.raises(OidcRefused, match=message):
        person_for_claims(OIDC, claims, REGISTRY, NOW)


def test_identity_reference_is_stable_and_per_subject() -> None:
    assert identity_reference(OIDC, "sub-7") == identity_reference(OIDC, "sub-7")
    assert identity_reference(OIDC, "sub-7") != identity_reference(OIDC, "sub-8")
    assert "sub-7" not in identity_reference(OIDC, "sub-7")


def test_oidc_routes_answer_404_when_not_configured(tmp_path: Path) -> None:
    from hitl_gate.app.portal.app import build_app
    from hitl_gate.app.portal.verdicts import IntakePlace
    from hitl_gate.app.portal.web import PortalConfig
    from tests.portal_fixtures import TestClient

    config = PortalConfig(
        audit_db=tmp_path / "audit.duckdb",
        secrets_dir=tmp_path / "secrets",
        place=IntakePlace(tmp_path, tmp_path, b"k", tmp_path / "key"),
        domains={},
    )
    client = TestClient(build_app(config), follow_redirects=False)
    for path in ("/oidc/start", "/oidc/callback", "/oidc/finish"):
        assert client.get(path).status_code == 404
    assert "/oidc/start" not in client.get("/sign-in").text

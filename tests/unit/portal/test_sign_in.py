"""Sign-in: password + TOTP, the signed binding of a credential to its person, lockout, rate
limit, CSRF, cookies and the audit trail of every attempt."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hitl_gate.app.portal.credentials import (
    Credential,
    CredentialError,
    record_enrolment,
    save_credential,
    sign_enrolment,
)
from hitl_gate.core.database import audit_connection
from hitl_gate.identity.store import load_registry
from tests.identity_fixtures import registry_act
from tests.portal_fixtures import PASSWORD, PortalWorld, WorldTemplates, csrf_of, sign_in

pytestmark = pytest.mark.slow  # every test runs ssh-keygen and argon2


@pytest.fixture
def world(tmp_path: Path, portal_worlds: WorldTemplates) -> PortalWorld:
    return portal_worlds.make(tmp_path, enrolled=("analyst-7",))


def test_good_sign_in_is_logged_and_sets_a_strict_http_only_cookie(world: PortalWorld) -> None:
    client = world.client()
    response = sign_in(client, "analyst-7", PASSWORD, world.code("analyst-7"))
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # bound to 127.0.0.1: plain http is allowed
    assert world.events("sign_in") == 1
    tokens = world.ws.count(
        "SELECT count(*) FROM portal_events WHERE session_digest = ?",
        [client.cookies["hitl_portal"]],
    )
    assert tokens == 0  # the token itself is never logged


def test_the_cookie_is_secure_when_the_portal_is_not_local(
    tmp_path: Path, portal_worlds: WorldTemplates
) -> None:
    from dataclasses import replace

    from hitl_gate.app.portal.settings import PortalSettings

    world = portal_worlds.make(tmp_path, enrolled=("analyst-7",))
    world.config = replace(world.config, settings=PortalSettings(host="10.0.0.5"))
    response = world.client().get("/sign-in")
    assert "secure" in response.headers["set-cookie"].lower()


@pytest.mark.parametrize("field", ["password", "code"])
def test_a_wrong_password_or_code_fails_and_is_logged(world: PortalWorld, field: str) -> None:
    code = world.code("analyst-7")
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    response = sign_in(
        world.client(),
        "analyst-7",
        "not the password at all" if field == "password" else PASSWORD,
        code if field == "password" else wrong_code,
    )
    assert response.status_code == 401
    assert "Sign-in failed" in response.text
    assert world.events("sign_in_failed") == 1 and world.events("sign_in") == 0


def test_lockout_after_repeated_failures_refuses_even_the_right_password(
    world: PortalWorld,
) -> None:
    client = world.client()
    for _ in range(world.config.settings.lockout_failures):
        assert sign_in(client, "analyst-7", "wrong password!!", "000000").status_code == 401
    assert world.events("locked_out") == 1
    locked = sign_in(client, "analyst-7", PASSWORD, world.code("analyst-7"))
    assert locked.status_code == 423
    assert world.events("sign_in") == 0
    world.clock.now += timedelta(minutes=world.config.settings.lockout_minutes + 1)
    assert sign_in(client, "analyst-7", PASSWORD, world.code("analyst-7")).status_code == 303


def test_sign_in_without_csrf_token_is_refused(world: PortalWorld) -> None:
    client = world.client()
    client.get("/sign-in")
    response = client.post(
        "/sign-in",
        data={"person_id": "analyst-7", "password": PASSWORD, "totp": world.code("analyst-7")},
    )
    assert response.status_code == 403
    assert world.events("sign_in") == 0 and world.events("refused") == 1


def test_sign_in_is_rate_limited_per_client(world: PortalWorld) -> None:
    client = world.client()
    statuses = [
        sign_in(client, "nobody", "whatever password", "123456").status_code
        for _ in range(world.config.settings.sign_in_per_minute + 1)
    ]
    assert statuses[-1] == 429 and 429 not in statuses[:-1]


def test_sign_out_ends_the_session_and_is_logged(world: PortalWorld) -> None:
    client = world.signed_in("analyst-7")
    page = client.get("/queue")
    assert client.post("/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert world.events("sign_out") == 1
    assert client.get("/queue").headers["location"] == "/sign-in"


def test_enrolment_signed_by_someone_else_is_refused(world: PortalWorld) -> None:
    """An administrator (or any other key) cannot bind a credential to another person."""
    world.ws.person("analyst-12")
    credential = Credential.new("analyst-12", PASSWORD)
    act = sign_enrolment(credential, world.ws.keys.private("admin"), world.clock())
    with audit_connection(world.ws.db) as con, pytest.raises(CredentialError, match="own holder"):
        record_enrolment(con, load_registry(con), "analyst-12", act, world.clock())


def test_a_forged_enrolment_row_does_not_give_a_sign_in(world: PortalWorld) -> None:
    """A database writer inserts an enrolment for analyst-12 signed with their own key and
    writes a credential file they know the password of: sign-in is refused."""
    world.ws.person("analyst-12")
    credential = Credential.new("analyst-12", PASSWORD)
    act = sign_enrolment(credential, world.ws.keys.private("analyst-7"), world.clock())
    with audit_connection(world.ws.db) as con:
        con.execute(
            "INSERT INTO portal_enrolments VALUES (?, 'analyst-12', ?, ?, 'x', ?)",
            [act.payload_sha256, act.text, act.signature, world.clock()],
        )
    save_credential(world.config.secrets_dir, credential)
    world.credentials["analyst-12"] = credential
    response = sign_in(world.client(), "analyst-12", PASSWORD, world.code("analyst-12"))
    assert response.status_code == 401
    assert world.ws.count(
        "SELECT count(*) FROM portal_events WHERE kind = 'sign_in_failed' AND detail LIKE "
        "'%own holder%'"
    ) == 1  # fmt: skip


def test_a_replaced_credential_file_does_not_match_its_signed_enrolment(
    world: PortalWorld,
) -> None:
    """Someone with write access to the secrets folder sets their own password: refused."""
    intruder = Credential.new("analyst-7", "the intruder's own password")
    save_credential(world.config.secrets_dir, intruder)
    world.credentials["analyst-7"] = intruder
    response = sign_in(
        world.client(), "analyst-7", "the intruder's own password", world.code("analyst-7")
    )
    assert response.status_code == 401
    assert world.ws.count(
        "SELECT count(*) FROM portal_events WHERE detail LIKE '%not the one their signed%'"
    ) == 1  # fmt: skip


def test_revoking_the_binding_key_revokes_the_portal_credential(world: PortalWorld) -> None:
    with audit_connection(world.ws.db) as con:
        registry_act(
            con, world.ws.keys, "admin", "revoke_key", at=world.clock() - timedelta(minutes=1),
            person_id="analyst-7", fingerprint=world.ws.keys.fingerprint("analyst-7"),
        )  # fmt: skip
    response = sign_in(world.client(), "analyst-7", PASSWORD, world.code("analyst-7"))
    assert response.status_code == 401


def test_short_passwords_are_refused() -> None:
    with pytest.raises(CredentialError, match="at least"):
        Credential.new("analyst-7", "short")


def test_a_totp_code_signs_in_once(world: PortalWorld) -> None:
    from hitl_gate.app.portal.app import build_app
    from tests.portal_fixtures import TestClient

    app, code = build_app(world.config), world.code("analyst-7")
    assert sign_in(TestClient(app), "analyst-7", PASSWORD, code).status_code == 200
    replayed = sign_in(TestClient(app, follow_redirects=False), "analyst-7", PASSWORD, code)
    assert replayed.status_code == 401
    assert world.ws.count(
        "SELECT count(*) FROM portal_events WHERE detail LIKE '%already used%'"
    ) == 1  # fmt: skip

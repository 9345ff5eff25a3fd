"""The people registry and signed acts, attacked the way an insider would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitl_gate.identity.acts import IdentityError, require_distinct, verify_act
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import PEOPLE, POLICY, VERDICTS, sign_bytes
from hitl_gate.identity.store import append_act, draft_act, load_registry, sign_act
from tests.identity_fixtures import add_person, forge_self_promotion, registry_act

pytestmark = pytest.mark.slow  # every test runs ssh-keygen


def test_bootstrap_then_people_added_by_the_administrator(staffed, keys) -> None:
    registry = load_registry(staffed)
    assert sorted(registry.people) == ["admin", "ana", "ben"]
    person, _ = registry.signer_at(keys.fingerprint("ana"), datetime.now(UTC))
    assert person.holds("consumer_credit", "senior_underwriter")
    assert not person.holds("lending_club", "senior_underwriter")
    assert [
        p.person_id
        for p in registry.holders("consumer_credit", "senior_underwriter", datetime.now(UTC))
    ] == ["ana", "ben"]


def test_the_first_act_must_be_an_administrator_signing_their_own_addition(con, keys) -> None:
    payload = draft_act(
        load_registry(con),
        "add_person",
        person_id="mallory",
        grants=["*:admin"],
        keys=[{"public_key": keys.public_line("mallory")}],
    )
    with pytest.raises(RegistryError, match="sign their own addition"):
        append_act(con, sign_act(payload, keys.private("someone-else")))
    with pytest.raises(RegistryError, match="not one the deployment pins"):
        append_act(
            con,
            sign_act(payload, keys.private("mallory")),
            trusted_admins={keys.fingerprint("admin")},
        )


def test_a_non_administrator_cannot_change_the_registry(staffed, keys) -> None:
    with pytest.raises(RegistryError, match="ana is not an administrator"):
        add_person(staffed, keys, "mallory", ["*:admin"], signer="ana")


def test_a_key_registered_under_two_ids_is_refused(staffed, keys) -> None:
    with pytest.raises(RegistryError, match="already registered to ana"):
        add_person(staffed, keys, "ana-two", ["consumer_credit:analyst"], key_name="ana")


def test_a_row_inserted_by_sql_makes_the_registry_refuse_to_load(staffed, keys) -> None:
    registry = load_registry(staffed)
    forge_self_promotion(staffed, registry, keys, "admin")  # ana signs her own promotion
    with pytest.raises(RegistryError, match="seq 4: ana is not an administrator"):
        load_registry(staffed)


def test_an_edited_payload_breaks_its_act(staffed) -> None:
    staffed.execute(
        "UPDATE people_acts SET payload = replace(payload, 'senior_underwriter', 'admin') "
        "WHERE person_id = 'ben'"
    )
    with pytest.raises(RegistryError, match="seq 3: act id or sequence altered"):
        load_registry(staffed)


def test_an_act_cannot_be_replayed(staffed, keys) -> None:
    payload = draft_act(load_registry(staffed), "revoke_person", person_id="ben")
    act = sign_act(payload, keys.private("admin"))
    append_act(staffed, act)
    with pytest.raises(RegistryError, match="replayed or reordered"):
        append_act(staffed, act)


def test_revoked_rotated_and_expired_keys_may_not_sign(staffed, keys) -> None:
    now = datetime.now(UTC)
    registry_act(
        staffed, keys, "admin", "revoke_key", person_id="ben", fingerprint=keys.fingerprint("ben")
    )
    registry_act(
        staffed,
        keys,
        "admin",
        "rotate_key",
        person_id="ana",
        old_fingerprint=keys.fingerprint("ana"),
        public_key=keys.public_line("ana-2027"),
    )
    registry_act(
        staffed,
        keys,
        "admin",
        "add_person",
        person_id="cy",
        grants=["consumer_credit:analyst"],
        keys=[
            {
                "public_key": keys.public_line("cy"),
                "valid_before": (now - timedelta(days=1)).isoformat(),
            }
        ],
    )
    registry = load_registry(staffed)
    later = datetime.now(UTC)
    with pytest.raises(RegistryError, match="revoked"):
        registry.signer_at(keys.fingerprint("ben"), later)
    with pytest.raises(RegistryError, match="revoked"):
        registry.signer_at(keys.fingerprint("ana"), later)
    with pytest.raises(RegistryError, match="expired"):
        registry.signer_at(keys.fingerprint("cy"), later)
    assert registry.signer_at(keys.fingerprint("ana-2027"), later)[0].person_id == "ana"
    # Before the revocation the same key could sign: history stays checkable.
    assert registry.signer_at(keys.fingerprint("ben"), now)


def test_verify_act_names_the_signer_and_refuses_what_is_wrong(staffed, keys) -> None:
    registry = load_registry(staffed)
    data = b'{"policy":"v2"}'
    good = sign_bytes(data, keys.private("ana"), POLICY)
    signer = verify_act(
        registry, data, good, POLICY, domain="consumer_credit", roles=["senior_underwriter"]
    )
    assert (signer.person_id, signer.fingerprint) == ("ana", keys.fingerprint("ana"))
    cases = {
        "is not signed": (data, None, POLICY),
        "not registered": (data, sign_bytes(data, keys.private("mallory"), POLICY), POLICY),
        "does not match these bytes": (b'{"policy":"v3"}', good, POLICY),
        "made for 'hitl-gate-policy', not for 'hitl-gate-verdicts'": (data, good, VERDICTS),
    }
    for reason, (payload, signature, namespace) in cases.items():
        with pytest.raises(IdentityError, match=reason):
            verify_act(registry, payload, signature, namespace)
    with pytest.raises(IdentityError, match="does not hold compliance"):
        verify_act(registry, data, good, POLICY, domain="consumer_credit", roles=["compliance"])


def test_a_signature_with_a_swapped_key_is_refused(staffed, keys) -> None:
    """A signature whose embedded key was replaced by a registered person's key is refused."""
    import base64

    from hitl_gate.identity.signatures import ARMOR_BEGIN, ARMOR_END

    registry = load_registry(staffed)
    data = b"verdicts"
    mallory = sign_bytes(data, keys.private("mallory"), VERDICTS)
    body = base64.b64decode("".join(mallory.strip()[len(ARMOR_BEGIN) : -len(ARMOR_END)].split()))
    ana_blob = base64.b64decode(keys.public_line("ana").split()[1])
    mallory_blob = base64.b64decode(keys.public_line("mallory").split()[1])
    forged = ARMOR_BEGIN + "\n" + base64.b64encode(body.replace(mallory_blob, ana_blob)).decode()
    forged += "\n" + ARMOR_END + "\n"
    with pytest.raises(IdentityError, match="does not match"):
        verify_act(registry, data, forged, VERDICTS)


def test_one_key_under_two_names_is_one_person(staffed, keys) -> None:
    registry = load_registry(staffed)
    data = b"resume"
    ana = verify_act(registry, data, sign_bytes(data, keys.private("ana"), POLICY), POLICY)
    ben = verify_act(registry, data, sign_bytes(data, keys.private("ben"), POLICY), POLICY)
    require_distinct([ana, ben])
    with pytest.raises(IdentityError, match="2 different people"):
        require_distinct([ana, ana])


def test_allowed_signers_export_is_accepted_by_ssh_keygen(staffed, keys, tmp_path) -> None:
    """The registry's allowed_signers text is what `ssh-keygen -Y verify` itself accepts."""
    import subprocess

    registry = load_registry(staffed)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(registry.allowed_signers(VERDICTS))
    data = tmp_path / "verdicts.csv"
    data.write_bytes(b"case_id,verdict\n1,approve\n")
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-Y",
            "sign",
            "-f",
            str(keys.private("ben")),
            "-n",
            VERDICTS,
            str(data),
        ],
        check=True,
    )
    result = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(allowed),
            "-I",
            "ben",
            "-n",
            VERDICTS,
            "-s",
            f"{data}.sig",
        ],
        stdin=data.open("rb"),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert PEOPLE in {PEOPLE}

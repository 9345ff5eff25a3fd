"""Loading the registry caches only what this process verified, and never hides a change.

`load_registry` starts from a registry this process already replayed from exactly the same
first acts (by a running SHA-256 of their rows) and checks the remaining signatures with
concurrent OpenSSH processes first. Attacked as the database writer would after a cached
load: a signature swapped in a cached act, an act appended, a cached registry asked for under
other pinned administrators, and a bad signature handed to the concurrent pre-check.
"""

from __future__ import annotations

import duckdb
import pytest

from hitl_gate.identity import signatures
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import PEOPLE, SignatureError, claimed_key, preverify, verify
from hitl_gate.identity.store import load_registry, sign_act
from tests.identity_fixtures import forge_self_promotion

pytestmark = pytest.mark.slow  # every test runs ssh-keygen


def _signature(con: duckdb.DuckDBPyConnection, seq: int) -> str:
    return str(con.execute("SELECT signature FROM people_acts WHERE seq = ?", [seq]).fetchone()[0])


def test_a_signature_swapped_in_a_cached_act_is_refused(staffed) -> None:
    load_registry(staffed)  # cached: acts 1-3
    staffed.execute("UPDATE people_acts SET signature = ? WHERE seq = 3", [_signature(staffed, 2)])
    with pytest.raises(RegistryError, match="people_acts seq 3"):
        load_registry(staffed)


def test_an_act_forged_after_a_cached_load_is_refused_and_removing_it_restores(
    staffed, keys
) -> None:
    registry = load_registry(staffed)
    assert load_registry(staffed) is registry  # the second load is the cached registry
    forge_self_promotion(staffed, registry, keys, "ana")  # ana signs her own promotion
    with pytest.raises(RegistryError, match="seq 4: ana is not an administrator"):
        load_registry(staffed)
    staffed.execute("DELETE FROM people_acts WHERE seq = 4")
    assert load_registry(staffed).head == registry.head


def test_a_cached_registry_is_not_reused_under_other_pinned_administrators(staffed, keys) -> None:
    load_registry(staffed)
    with pytest.raises(RegistryError, match="not one the deployment pins"):
        load_registry(staffed, trusted_admins=[keys.fingerprint("ana")])
    assert load_registry(staffed, trusted_admins=[keys.fingerprint("admin")]).acts == 3


def test_the_concurrent_precheck_never_remembers_a_bad_signature(keys) -> None:
    key_path = keys.private("ana")
    data = b'{"kind":"x"}'
    armored = sign_act(data, key_path).signature
    key = claimed_key(armored)
    signatures._good_signatures.clear()  # noqa: SLF001 - as a new process
    preverify([(data + b" ", armored, PEOPLE, key), (data, armored, "hitl-gate-policy", key)])
    assert not signatures._good_signatures  # noqa: SLF001
    with pytest.raises(SignatureError):
        verify(data + b" ", armored, PEOPLE, key)
    preverify([(data, armored, PEOPLE, key)])
    assert len(signatures._good_signatures) == 1  # noqa: SLF001

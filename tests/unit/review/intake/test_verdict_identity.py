"""Identity attacks on returned verdict files (issue 17): each refused with its reason, nothing
executed.

Every attack is what an insider or a careless operator could do with a real batch: type
another reviewer's id, sign with the wrong key (unregistered, expired, revoked, someone else's,
not the assignee's), move a valid signature onto another file, replay one, or count one key
twice for four eyes. Real ssh-keygen keys, a real registry of signed acts, real DuckDB.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.identity.registry import RegistryError
from hitl_gate.identity.signatures import POLICY, VERDICTS, sign_file, signature_path
from hitl_gate.review.intake.verdict_files import IntakeOutcome
from tests.fixed_place import emptied
from tests.identity_fixtures import registry_act
from tests.review_fixtures import IN_TIME, REGISTERED_AT, Workspace, make_workspace

pytestmark = pytest.mark.slow  # verdict files and registry acts signed by ssh-keygen

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"
BEFORE_RETURN = datetime(2018, 3, 2, 8, 0, tzinfo=UTC)  # after export, before the file arrives


def _returned(ws: Workspace, reviewer: str = "analyst-7", name: str = "r.xlsx") -> Path:
    """The analyst batch answered (typed id `reviewer`), assigned to analyst-7, unsigned."""
    ws.person_assigned("analyst-7", ws.batches[ANALYST].batch_id)
    return ws.fill(ANALYST, name, reviewer)


def _act(ws: Workspace, kind: str, at: datetime = REGISTERED_AT, **fields: object) -> None:
    with audit_connection(ws.db) as con:
        registry_act(con, ws.keys, "admin", kind, at=at, **fields)


def _unsigned(ws: Workspace) -> IntakeOutcome:
    return ws.ingest(_returned(ws), sign=False)


def _garbage_signature(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    signature_path(path).write_text("analyst-7 signed this, honest\n")
    return ws.ingest(path, sign=False)


def _corrupted_base64(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    ws.sign(path, "analyst-7")
    text = signature_path(path).read_text().splitlines()
    text[1] = "!!" + text[1][2:]
    signature_path(path).write_text("\n".join(text))
    return ws.ingest(path, sign=False)


def _unregistered_key(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    sign_file(path, ws.keys.private("stranger"), VERDICTS)
    return ws.ingest(path, sign=False)


def _someone_elses_key(ws: Workspace) -> IntakeOutcome:
    """analyst-12 (registered, same role) signs a file typed as analyst-7's, on 7's batch."""
    path = _returned(ws)
    ws.sign(path, "analyst-12")
    return ws.ingest(path, sign=False)


def _expired_key(ws: Workspace) -> IntakeOutcome:
    ws.person("admin")
    key = {"public_key": ws.keys.public_line("temp-1"), "valid_before": "2018-02-01T00:00:00+00:00"}
    _act(
        ws, "add_person", person_id="temp-1", display_name="Temp",
        grants=["consumer_credit:analyst"], keys=[key],
    )  # fmt: skip
    path = _returned(ws, reviewer="temp-1")
    ws.assign(ws.batches[ANALYST].batch_id, "temp-1")
    sign_file(path, ws.keys.private("temp-1"), VERDICTS)
    return ws.ingest(path, sign=False)


def _key_not_yet_valid(ws: Workspace) -> IntakeOutcome:
    ws.person("admin")
    key = {"public_key": ws.keys.public_line("temp-2"), "valid_after": "2018-06-01T00:00:00+00:00"}
    _act(
        ws, "add_person", person_id="temp-2", display_name="Temp",
        grants=["consumer_credit:analyst"], keys=[key],
    )  # fmt: skip
    path = _returned(ws, reviewer="temp-2")
    ws.assign(ws.batches[ANALYST].batch_id, "temp-2")
    sign_file(path, ws.keys.private("temp-2"), VERDICTS)
    return ws.ingest(path, sign=False)


def _revoked_key(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    _act(
        ws, "revoke_key", at=BEFORE_RETURN, person_id="analyst-7",
        fingerprint=ws.keys.fingerprint("analyst-7"),
    )  # fmt: skip
    sign_file(path, ws.keys.private("analyst-7"), VERDICTS)
    return ws.ingest(path, sign=False)


def _revoked_person(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    _act(ws, "revoke_person", at=BEFORE_RETURN, person_id="analyst-7")
    sign_file(path, ws.keys.private("analyst-7"), VERDICTS)
    return ws.ingest(path, sign=False)


def _rotated_old_key(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    _act(
        ws, "rotate_key", at=BEFORE_RETURN, person_id="analyst-7",
        old_fingerprint=ws.keys.fingerprint("analyst-7"),
        public_key=ws.keys.public_line("analyst-7-new"),
    )  # fmt: skip
    sign_file(path, ws.keys.private("analyst-7"), VERDICTS)  # the retired key
    return ws.ingest(path, sign=False)


def _signature_of_another_file(ws: Workspace) -> IntakeOutcome:
    """A valid signature by the assignee, made over another file, copied next to this one."""
    other = _returned(ws, name="other.xlsx")
    ws.sign(other, "analyst-7")
    path = ws.fill(
        ANALYST, "r.xlsx", "analyst-7", {(2, "verdict"): "decline", (2, "rationale"): "x"}
    )
    shutil.copy(signature_path(other), signature_path(path))
    signature_path(other).unlink()
    other.unlink()
    return ws.ingest(path, sign=False)


def _edited_after_signing(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    ws.sign(path, "analyst-7")
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    return ws.ingest(path, sign=False)


def _signed_by_someone_not_assigned(ws: Workspace) -> IntakeOutcome:
    """analyst-12 answers analyst-7's batch under their own id and key."""
    path = _returned(ws, reviewer="analyst-12")
    ws.sign(path, "analyst-12")
    return ws.ingest(path, sign=False)


def _signed_by_the_administrator(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws, reviewer="admin")
    sign_file(path, ws.keys.private("admin"), VERDICTS)
    return ws.ingest(path, sign=False)


def _batch_assigned_to_nobody(ws: Workspace) -> IntakeOutcome:
    ws.person("analyst-7")
    path = ws.fill(ANALYST, "r.xlsx", "analyst-7")
    ws.sign(path, "analyst-7")
    return ws.ingest(path, sign=False)


def _reassigned_away(ws: Workspace) -> IntakeOutcome:
    """The batch was reassigned to analyst-12 by a supervisor; 7's signed return is late."""
    path = _returned(ws)
    ws.person_assigned("analyst-12", ws.batches[ANALYST].batch_id)
    ws.sign(path, "analyst-7")
    return ws.ingest(path, sign=False)


def _assigned_without_the_role(ws: Workspace) -> IntakeOutcome:
    """Assigned the senior batch by mistake, but holding only the analyst role."""
    ws.person_assigned("analyst-7", ws.batches[SENIOR].batch_id)
    path = ws.fill(SENIOR, "r.xlsx", "analyst-7")
    ws.sign(path, "analyst-7")
    return ws.ingest(path, sign=False)


def _wrong_namespace(ws: Workspace) -> IntakeOutcome:
    """The assignee's signature, but one made to approve a policy (another purpose)."""
    path = _returned(ws)
    sign_file(path, ws.keys.private("analyst-7"), POLICY)
    return ws.ingest(path, sign=False)


def _typed_id_differs_from_signer(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws, reviewer="analyst-12")
    ws.sign(path, "analyst-7")
    return ws.ingest(path, sign=False)


def _replayed_signature_on_a_new_file(ws: Workspace) -> IntakeOutcome:
    """A signature already used for an accepted file, copied beside a new file."""
    first = _returned(ws, name="a.csv")
    first = ws.fill_csv(ANALYST, "a.csv", {0: {"verdict": "approve", "rationale": "ok"}})
    ws.sign(first, "analyst-7")
    kept = signature_path(first).read_text()
    assert ws.ingest(first, sign=False).accepted == 1
    second = ws.fill_csv(ANALYST, "b.csv", {1: {"verdict": "decline", "rationale": "no"}})
    signature_path(second).write_text(kept)
    ws.count("DELETE FROM verdicts")  # so only the replay can make anything final
    return ws.ingest(second, sign=False)


def _oversized_signature(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    signature_path(path).write_bytes(b"A" * 1_000_000)
    return ws.ingest(path, sign=False)


def _empty_signature(ws: Workspace) -> IntakeOutcome:
    path = _returned(ws)
    signature_path(path).write_text("   \n")
    return ws.ingest(path, sign=False)


def _registered_after_the_return(ws: Workspace) -> IntakeOutcome:
    ws.person("admin")
    _act(
        ws, "add_person", at=datetime(2018, 4, 1, tzinfo=UTC), person_id="late-1",
        display_name="Late", grants=["consumer_credit:analyst"],
        keys=[{"public_key": ws.keys.public_line("late-1")}],
    )  # fmt: skip
    path = _returned(ws, reviewer="late-1")
    ws.assign(ws.batches[ANALYST].batch_id, "late-1")
    sign_file(path, ws.keys.private("late-1"), VERDICTS)
    return ws.ingest(path, sign=False)


@dataclass(frozen=True)
class Attack:
    run: Callable[[Workspace], IntakeOutcome]
    reason: str


ATTACKS: dict[str, Attack] = {
    "typed_id_no_signature": Attack(_unsigned, "not signed"),
    "typed_id_garbage_signature": Attack(_garbage_signature, "not an SSH signature"),
    "corrupted_signature": Attack(_corrupted_base64, "not valid base64"),
    "empty_signature_file": Attack(_empty_signature, "not signed"),
    "oversized_signature_file": Attack(_oversized_signature, "not an SSH signature"),
    "unregistered_key": Attack(_unregistered_key, "is not registered to anyone"),
    "key_registered_to_someone_else": Attack(_someone_elses_key, "assigned to analyst-7"),
    "expired_key": Attack(_expired_key, "expired at 2018-02-01"),
    "key_not_yet_valid": Attack(_key_not_yet_valid, "is not valid before"),
    "revoked_key": Attack(_revoked_key, "was revoked at"),
    "revoked_person": Attack(_revoked_person, "analyst-7 was revoked"),
    "retired_key_after_rotation": Attack(_rotated_old_key, "was revoked at"),
    "registered_after_the_return": Attack(_registered_after_the_return, "not registered yet"),
    "valid_signature_over_another_file": Attack(_signature_of_another_file, "does not match"),
    "file_edited_after_signing": Attack(_edited_after_signing, "does not match"),
    "signed_by_someone_not_assigned": Attack(
        _signed_by_someone_not_assigned, "only the assignee's signature"
    ),
    "signed_by_the_administrator": Attack(_signed_by_the_administrator, "assigned to analyst-7"),
    "batch_assigned_to_nobody": Attack(_batch_assigned_to_nobody, "assigned to nobody"),
    "reassigned_away": Attack(_reassigned_away, "assigned to analyst-12"),
    "assigned_without_the_role": Attack(_assigned_without_the_role, "does not hold"),
    "signature_for_another_purpose": Attack(_wrong_namespace, "not for 'hitl-gate-verdicts'"),
    "typed_id_differs_from_signer": Attack(
        _typed_id_differs_from_signer, "typed reviewer_id 'analyst-12' is not the signer"
    ),
    "replayed_signature_on_a_new_file": Attack(
        _replayed_signature_on_a_new_file, "replayed signature"
    ),
}


def test_the_identity_corpus_is_large_enough() -> None:
    assert len(ATTACKS) >= 20


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each case builds its workspace (`tests.fixed_place.emptied` first): one audit file
    path for the module's cases, so one kept DuckDB instance rather than one built per case."""
    return tmp_path_factory.mktemp("identity-place") / "ws"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_identity_attack_is_refused_with_its_reason(place: Path, key: bytes, name: str) -> None:
    ws = make_workspace(emptied(place), key)
    outcome = ATTACKS[name].run(ws)
    messages = " | ".join(outcome.messages)
    assert ATTACKS[name].reason in messages, f"{name}: {messages!r}"
    assert outcome.refused and outcome.accepted == 0
    assert outcome.file_name in messages  # the message names the file
    finals, opinions = ws.counts(  # one connection for both
        "SELECT count(*) FROM verdicts",
        ("SELECT count(*) FROM verdict_opinions WHERE file_sha256 = ?", [outcome.file_sha256]),
    )
    assert finals == 0, "nothing may become final"
    assert opinions == 0


def test_the_same_key_cannot_be_registered_under_a_second_id(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    ws.person("uw-ana")
    with pytest.raises(RegistryError, match="already registered to uw-ana"):
        _act(
            ws, "add_person", person_id="uw-ana2", display_name="Ana again",
            grants=["consumer_credit:senior_underwriter"],
            keys=[{"public_key": ws.keys.public_line("uw-ana")}],
        )  # fmt: skip


def test_four_eyes_by_one_key_under_two_typed_ids_counts_once(tmp_path: Path, key: bytes) -> None:
    """uw-ana returns the four-eyes batch twice, the second time typing uw-ben's id (or no id):
    both files are signed by her key, so the second opinion is hers again and refused."""
    ws = make_workspace(tmp_path, key)
    batch = ws.batches[SENIOR].batch_id
    first = ws.ingest(ws.fill(SENIOR, "a.xlsx", "uw-ana"))
    assert (first.accepted, first.pending_second) == (1, 2)
    typed_ben = ws.fill(SENIOR, "b.xlsx", "uw-ben", {(2, "rationale"): "again"})
    ws.assign(batch, "uw-ana")
    as_ben = ws.ingest(typed_ben, signer="uw-ana")
    assert as_ben.accepted == 0 and "is not the signer 'uw-ana'" in " ".join(as_ben.messages)
    blank = ws.fill(SENIOR, "c.xlsx", "uw-ana", {(r, "reviewer_id"): None for r in (2, 3, 4)})
    again = ws.ingest(blank, signer="uw-ana")
    assert again.accepted == 0 and "four eyes" in " ".join(again.messages)
    assert ws.count("SELECT count(*) FROM verdicts") == 1  # only the single-review case


def test_four_eyes_by_two_people_completes_and_keeps_both_keys(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    ws.ingest(ws.fill(SENIOR, "a.xlsx", "uw-ana"))
    second = ws.ingest(ws.fill(SENIOR, "b.xlsx", "uw-ben"))
    assert second.accepted == 2  # APP-004, APP-005 agreed by two people
    assert second.rejected == 1  # APP-006 was already final (single review by uw-ana)
    keys = ws.count(
        "SELECT count(DISTINCT signer_fingerprint) FROM verdict_opinions WHERE four_eyes"
    )
    assert keys == 2


def test_accepted_file_keeps_signature_signer_and_digest(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    path = _returned(ws)
    outcome = ws.ingest(path)
    assert outcome.accepted == 4 and outcome.signer_id == "analyst-7"
    with audit_connection(ws.db) as con:
        row = con.execute(
            "SELECT signer_id, signer_fingerprint, signature, file_sha256 FROM verdict_files"
        ).fetchall()[0]
        reviewers = con.execute("SELECT DISTINCT reviewer_id FROM verdicts").fetchall()
    assert row[0] == "analyst-7" and row[1] == ws.keys.fingerprint("analyst-7")
    assert row[2].startswith("-----BEGIN SSH SIGNATURE-----") and row[3] == outcome.file_sha256
    assert reviewers == [("analyst-7",)]
    assert (ws.archive / f"{outcome.file_sha256}.xlsx.sig").exists()


def test_refused_unsigned_file_is_accepted_once_signed_and_replays_are_named(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    path = _returned(ws)
    kept = path.read_bytes()
    refused = ws.ingest(path, sign=False)
    assert refused.identity_refused and "not signed" in (refused.error or "")
    path.write_bytes(kept)
    replay = ws.ingest(path, sign=False)
    assert replay.replay_of is not None and "refused again" in replay.summary()
    assert ws.count("SELECT count(*) FROM verdict_rejections") == 1  # kept once
    path.write_bytes(kept)
    accepted = ws.ingest(path)
    assert accepted.accepted == 4 and not accepted.refused
    path.write_bytes(kept)
    ws.sign(path, "analyst-7")
    again = ws.ingest(path, sign=False)
    assert again.duplicate and not again.refused and "already taken in" in again.summary()
    assert ws.count("SELECT count(*) FROM verdicts") == 4


def test_an_ecdsa_key_signs_as_well(tmp_path: Path, key: bytes) -> None:
    """Identity is the key, of any accepted type (here ECDSA P-256), not a typed name."""
    ws = make_workspace(tmp_path, key)
    ws.person("admin")
    _act(
        ws, "add_person", person_id="ecdsa-1", display_name="E", grants=["consumer_credit:analyst"],
        keys=[{"public_key": Path(f"{ws.keys.private('ecdsa-1', 'ecdsa')}.pub").read_text()}],
    )  # fmt: skip
    ws.assign(ws.batches[ANALYST].batch_id, "ecdsa-1")
    path = ws.fill(ANALYST, "r.xlsx", "ecdsa-1")
    sign_file(path, ws.keys.private("ecdsa-1", "ecdsa"), VERDICTS)
    assert ws.ingest(path, sign=False, now=IN_TIME).accepted == 4

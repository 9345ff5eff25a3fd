"""Reassignment is a supervisor's signed act: refused unsigned, by a non-supervisor, replayed,
or onto the holder of the other four-eyes opinion; carried out by the CLI with the files."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, transaction
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.signatures import REVIEW_ADMIN, VERDICTS, sign_bytes
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import (
    FIRST_OPINION,
    SECOND_OPINION,
    AssignmentError,
    current_assignee,
    reassign,
    reassignment_payload,
)
from hitl_gate.review.export.days import ExportedDays, export_review_days
from hitl_gate.review.manifest import batch_folder, load_manifest
from hitl_gate.review.signing import load_or_create_key
from tests.identity_fixtures import Keyring
from tests.key_pool import PooledKeyring
from tests.review_fixtures import CREATED, DAY, review_cases
from tests.review_people import register_reviewers

pytestmark = pytest.mark.slow  # keys made and registry acts signed by ssh-keygen

DOMAIN = "consumer_credit"
NOW = datetime.now(UTC)


def routed() -> pl.DataFrame:
    """The seven review cases as the routing stage stores them."""
    return review_cases().with_columns(
        route=pl.lit("human_review"),
        partition_date=pl.lit(DAY),
        review_deferred=pl.lit(False),
        policy_version=pl.lit("v1"),
        policy_digest=pl.lit("d1"),
        model_name=pl.lit("consumer_credit_pd"),
        model_version=pl.lit("3"),
        feature_service=pl.lit("fs_v1"),
    )


def export_day(db: Path, batches_dir: Path, key: bytes, domain: DomainConfig) -> ExportedDays:
    return export_review_days(
        lambda: audit_connection(db),
        routed().lazy(),
        [DAY],
        domain=domain,
        batches_dir=batches_dir,
        key=key,
        created_at=CREATED,
        run_id="r1",
    )


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Keyring]:
    """One registry (and its keys) for the module; each test copies the database."""
    folder = tmp_path_factory.mktemp("people")
    keys = PooledKeyring(folder)
    register_reviewers(folder / "audit.duckdb", keys)
    return folder / "audit.duckdb", keys


@pytest.fixture
def exported(
    tmp_path: Path, key: bytes, people: tuple[Path, Keyring]
) -> tuple[Path, Keyring, ExportedDays]:
    template, keys = people
    db = tmp_path / "audit.duckdb"
    shutil.copy(template, db)
    return db, keys, export_day(db, tmp_path / "batches", key, load_domain(DOMAIN))


def _batch(exported: ExportedDays, queue: str, slot: int = 0) -> str:
    return next(
        b.batch_id for _, b in exported.batches if b.queue == queue and b.opinion_slot == slot
    )


def _try(
    db: Path,
    batch_id: str,
    to: str,
    signer_key: Path | None,
    *,
    queue_role: str = "analyst",
    escalation_role: str | None = "senior_underwriter",
    namespace: str = REVIEW_ADMIN,
    payload: bytes | None = None,
) -> object:
    with audit_connection(db) as con:
        current = current_assignee(con, batch_id)
        assert current is not None
        payload = payload or reassignment_payload(
            batch_id, DOMAIN, to, "on leave", NOW, current.seq + 1
        )
        signature = sign_bytes(payload, signer_key, namespace) if signer_key else None
        with transaction(con):
            return reassign(
                con,
                load_registry(con),
                payload,
                signature,
                queue_role=queue_role,
                escalation_role=escalation_role,
                now=NOW,
            )


def test_a_supervisor_reassigns_and_the_seq_grows(exported) -> None:
    db, keys, out = exported
    batch = _batch(out, "credit_analyst")
    with audit_connection(db) as con:
        assert current_assignee(con, batch).assignee_id == "ana"  # seq 1, by the pipeline
    done = _try(db, batch, "bob", keys.private("sue"))  # a senior supervises analysts
    assert done.supervisor_id == "sue" and done.previous_assignee == "ana"
    with audit_connection(db) as con:
        now = current_assignee(con, batch)
        row = con.execute(
            "SELECT assigned_by, signer_fingerprint, reason FROM review_assignments "
            "WHERE batch_id = ? AND seq = 2",
            [batch],
        ).fetchone()
    assert (now.assignee_id, now.seq) == ("bob", 2)
    assert row == ("sue", keys.fingerprint("sue"), "on leave")


@pytest.mark.parametrize(
    ("signer", "namespace", "refusal"),
    [
        (None, REVIEW_ADMIN, "is not signed"),
        ("bob", REVIEW_ADMIN, "does not hold senior_underwriter or admin"),  # a peer analyst
        ("ana", REVIEW_ADMIN, "does not hold senior_underwriter or admin"),  # the assignee
        ("sue", VERDICTS, "made for 'hitl-gate-verdicts'"),  # a signature for another purpose
        ("mallory", REVIEW_ADMIN, "is not registered to anyone"),
    ],
)
def test_reassignment_refusals(exported, signer, namespace, refusal) -> None:
    """Adversarial: unsigned, by a non-supervisor, wrong namespace, unregistered key."""
    db, keys, out = exported
    batch = _batch(out, "credit_analyst")
    with pytest.raises(AssignmentError, match=refusal):
        _try(db, batch, "bob", keys.private(signer) if signer else None, namespace=namespace)
    with audit_connection(db) as con:
        assert current_assignee(con, batch).seq == 1  # nothing recorded


def test_a_replayed_or_edited_reassignment_is_refused(exported) -> None:
    db, keys, out = exported
    batch = _batch(out, "credit_analyst")
    payload = reassignment_payload(batch, DOMAIN, "bob", "on leave", NOW, 2)
    signature = sign_bytes(payload, keys.private("sue"), REVIEW_ADMIN)

    def record(data: bytes) -> None:
        with audit_connection(db) as con, transaction(con):
            reassign(
                con, load_registry(con), data, signature, queue_role="analyst",
                escalation_role="senior_underwriter", now=NOW,
            )  # fmt: skip

    edited = payload.replace(b'"bob"', b'"ana"')
    with pytest.raises(AssignmentError, match="does not match these bytes"):
        record(edited)
    record(payload)
    with pytest.raises(AssignmentError, match="replayed or out of date"):
        record(payload)  # the same signed act again: seq 2 is taken
    stale = reassignment_payload(batch, DOMAIN, "ana", "back", NOW - timedelta(days=2), 3)
    with pytest.raises(AssignmentError, match="stale or replayed"):
        _try(db, batch, "ana", keys.private("sue"), payload=stale)


def test_one_person_never_holds_both_four_eyes_opinions(exported) -> None:
    """Adversarial: a supervisor moves the blind second opinion to the first opinion's holder."""
    db, keys, out = exported
    first, second = (
        _batch(out, "senior_underwriter", FIRST_OPINION),
        _batch(out, "senior_underwriter", SECOND_OPINION),
    )
    with audit_connection(db) as con:
        holder = current_assignee(con, first).assignee_id
    with pytest.raises(AssignmentError, match="holds the other opinion"):
        _try(
            db, second, holder, keys.private("cho"),
            queue_role="senior_underwriter", escalation_role="compliance",
        )  # fmt: skip
    with pytest.raises(AssignmentError, match="does not hold role"):
        _try(
            db, second, "bob", keys.private("admin"),
            queue_role="senior_underwriter", escalation_role="compliance",
        )  # fmt: skip


def _hitl(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`hitl <argv>` run by the CLI's `main` in this process: exit code, stdout, stderr (a
    `SystemExit` text is what the terminal would show on stderr, with exit code 1)."""
    code: int | str | None = 0
    try:
        main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    if isinstance(code, str):
        err, code = err + code + "\n", 1
    return int(code or 0), out, err


@pytest.mark.slow
def test_the_cli_reassigns_and_hands_the_files_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hitl review reassign` signs with the supervisor's key, records, moves the folder."""
    home = tmp_path / "home"
    paths = HitlPaths.at(home)
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    keys = PooledKeyring(keys_dir)
    register_reviewers(paths.audit_db, keys)
    key = load_or_create_key(paths.secrets_dir)
    out = export_day(paths.audit_db, paths.review_batches, key, load_domain(DOMAIN))
    batch = _batch(out, "credit_analyst")
    for name in [k for k in os.environ if k.startswith("HITL_")]:
        monkeypatch.delenv(name)
    command = ["--home", str(home), "review", "reassign", batch, "--to", "bob", "--reason"]
    code, _, err = _hitl([*command, "leave", "--key", str(keys.private("bob"))], capsys)
    assert code != 0 and "does not hold senior_underwriter or admin" in err
    code, done, err = _hitl([*command, "leave", "--key", str(keys.private("sue"))], capsys)
    assert code == 0, err
    assert "reassigned from ana to bob" in done
    folder = batch_folder(paths.review_batches, batch, "bob")
    assert load_manifest(folder, key)["assignee_id"] == "bob"
    assert not (paths.review_batches / "ana" / batch).exists()
    code, again, _ = _hitl([*command, "leave"], capsys)
    assert code == 0 and "already assigned to bob" in again


def test_loads_count_what_is_already_assigned_on_the_day(exported) -> None:
    """An export adding batches to a day (escalations) starts from the day's assigned load."""
    from hitl_gate.review.assignments import assigner_for_days

    db, _, out = exported
    with audit_connection(db, read_only=True) as con:
        assigner = assigner_for_days(con, DOMAIN, NOW, [DAY], needs_age_key=False)
        replacing = assigner_for_days(con, DOMAIN, NOW, [DAY], needs_age_key=False, replaced=[DAY])
    assert assigner.load[("ana", DAY)] == 4  # the analyst batch
    assert sum(assigner.load.values()) == sum(len(b.case_ids) for _, b in out.batches)
    assert replacing.load == {}


def test_a_reassignment_needs_a_reason_and_a_time_with_its_offset(exported) -> None:
    db, keys, out = exported
    batch = _batch(out, "credit_analyst")
    blank = reassignment_payload(batch, DOMAIN, "bob", "  ", NOW, 2)
    with pytest.raises(AssignmentError, match="gives no reason"):
        _try(db, batch, "bob", keys.private("sue"), payload=blank)
    naive = blank.replace(b'"reason":"  "', b'"reason":"leave"').replace(b"+00:00", b"")
    with pytest.raises(AssignmentError, match="without a UTC offset"):
        _try(db, batch, "bob", keys.private("sue"), payload=naive)

"""Batches go to named people: least-loaded, capacity, unavailability, blind four-eyes, and
owner-only, encrypted folders. Real registry (signed acts, ssh-keygen keys), real files."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from pyrage import x25519

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.identity.registry import Registry
from hitl_gate.identity.store import load_registry
from hitl_gate.review.assignments import FIRST_OPINION, SECOND_OPINION, SINGLE, Assigner
from hitl_gate.review.export.batches import ReviewBatch, stage_review_batches
from hitl_gate.review.export.sealing import (
    SealingError,
    decrypt_with_ssh_key,
    pipeline_identity,
)
from hitl_gate.review.manifest import ManifestError, batch_folder, load_manifest
from hitl_gate.review.settings import ReviewSettings, review_settings
from tests.identity_fixtures import Keyring
from tests.key_pool import PooledKeyring
from tests.review_fixtures import CREATED, batch_export, review_cases
from tests.review_people import SINCE, register_reviewers, set_availability

pytestmark = pytest.mark.slow  # keys made and registry acts signed by ssh-keygen

ANALYST, SENIOR = "credit_analyst", "senior_underwriter"


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture(scope="module")
def settings(domain: DomainConfig) -> ReviewSettings:
    loaded = review_settings(domain)
    assert loaded is not None
    return loaded


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    folder = tmp_path / "keys"
    folder.mkdir()
    return PooledKeyring(folder)


def _sized(settings: ReviewSettings, size: int, **queue_fields: object) -> ReviewSettings:
    """The settings with every queue's batch size set to `size` (and other queue fields)."""
    queues = {
        name: queue.model_copy(update={"batch_size": size, **queue_fields})
        for name, queue in settings.queues.items()
    }
    return settings.model_copy(update={"queues": queues})


def _encrypting(settings: ReviewSettings) -> ReviewSettings:
    """`settings` with batch encryption on (to each assignee's SSH key)."""
    encryption = settings.encryption.model_copy(update={"enabled": True})
    return settings.model_copy(update={"encryption": encryption})


def _encrypted_export(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> tuple[Registry, x25519.Identity, list[ReviewBatch]]:
    """The reviewers registered, then the cases exported encrypted to each assignee and to the
    pipeline's own identity."""
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    pipeline = pipeline_identity(tmp_path / "secrets")
    batches, _ = _export(
        tmp_path, domain, _encrypting(settings), registry, key, str(pipeline.to_public())
    )
    return registry, pipeline, batches


def _export(
    tmp_path: Path,
    domain: DomainConfig,
    settings: ReviewSettings,
    registry: Registry,
    key: bytes,
    recipient: str | None = None,
) -> tuple[list[ReviewBatch], list]:
    staged = stage_review_batches(
        review_cases(),
        batch_export(
            domain, tmp_path / "batches", key, settings=settings, pipeline_recipient=recipient,
            assigner=Assigner(
                registry, domain.name, CREATED, needs_age_key=settings.encryption.enabled
            ),
        ),
    )  # fmt: skip
    return staged.publish(), staged.unassigned


def _of(batches: list[ReviewBatch], queue: str) -> list[ReviewBatch]:
    return [b for b in batches if b.queue == queue]


def test_batches_go_to_the_least_loaded_person_in_their_own_folder(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    batches, unassigned = _export(tmp_path, domain, _sized(settings, 1), registry, key)
    assert unassigned == []
    analysts = _of(batches, ANALYST)
    # One case per batch: the two analysts alternate, ties broken by id (ana before bob).
    assert [b.assignee_id for b in analysts] == ["ana", "bob", "ana", "bob"]
    for batch in batches:
        assert batch.folder == tmp_path / "batches" / str(batch.assignee_id) / batch.batch_id
        manifest = load_manifest(batch.folder, key)
        assert manifest["assignee_id"] == batch.assignee_id
        assert batch_folder(tmp_path / "batches", batch.batch_id) == batch.folder
    again, _ = _export(tmp_path / "again", domain, _sized(settings, 1), registry, key)
    assert [b.batch_id for b in again] == [b.batch_id for b in batches]  # deterministic


def test_personal_capacity_and_unavailability_are_respected(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    db = tmp_path / "audit.duckdb"
    register_reviewers(db, keys)
    set_availability(db, keys, "ana", daily_capacity=1)
    away = {
        "starts": (CREATED - timedelta(days=1)).isoformat(),
        "ends": "2018-03-09T00:00:00+00:00",
    }
    registry = set_availability(db, keys, "sam", unavailable=[away])
    batches, unassigned = _export(tmp_path, domain, _sized(settings, 1), registry, key)
    assert [b.assignee_id for b in _of(batches, ANALYST)] == ["ana", "bob", "bob", "bob"]
    assert "sam" not in {b.assignee_id for b in batches}  # on leave at export time
    # The four-eyes pair needs two seniors; only sue is available: it stays queued, counted.
    assert [(u.queue, u.cases) for u in unassigned] == [(SENIOR, 2)]
    assert "four-eyes needs two different available people" in unassigned[0].reason


def test_nobody_at_capacity_leaves_cases_queued_with_the_reason(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    registry = register_reviewers(tmp_path / "audit.duckdb", keys, {"ana": "analyst"})
    tight = _sized(settings, 1, daily_capacity=1)  # the queue's capacity is ana's fallback
    batches, unassigned = _export(tmp_path, domain, tight, registry, key)
    assert [b.assignee_id for b in batches] == ["ana"]
    reasons = {u.queue: (u.cases, u.reason) for u in unassigned}
    assert reasons[ANALYST] == (3, "all 1 holder(s) of role 'analyst' are unavailable or at "
                                   "their daily capacity")  # fmt: skip
    assert (
        reasons[SENIOR][1] == "no active person holds role 'senior_underwriter' in consumer_credit"
    )
    assert not any(p.name not in {"ana"} for p in (tmp_path / "batches").iterdir()
                   if not p.name.startswith("."))  # fmt: skip


def test_four_eyes_goes_to_two_people_and_never_to_one_alone(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    """Adversarial: with one senior registered, no four-eyes batch is made at all."""
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    batches, _ = _export(tmp_path, domain, settings, registry, key)
    first = [b for b in batches if b.opinion_slot == FIRST_OPINION]
    second = [b for b in batches if b.opinion_slot == SECOND_OPINION]
    assert len(first) == len(second) == 1
    assert first[0].case_ids == second[0].case_ids == ("APP-004", "APP-005")
    assert first[0].assignee_id != second[0].assignee_id
    assert second[0].first_batch_id == first[0].batch_id
    assert {b.opinion_slot for b in _of(batches, ANALYST)} == {SINGLE}

    alone = register_reviewers(
        tmp_path / "alone.duckdb", keys, {"ana": "analyst", "sue": "senior_underwriter"}
    )
    batches, unassigned = _export(tmp_path / "alone", domain, settings, alone, key)
    assert [(b.opinion_slot, b.case_ids) for b in _of(batches, SENIOR)] == [(SINGLE, ("APP-006",))]
    assert [(u.queue, u.cases) for u in unassigned] == [(SENIOR, 2)]


def _reviewer_bytes(folder: Path) -> str:
    """Everything a reviewer receives, as text: manifest, CSV, and the XLSX parts."""
    parts = [(folder / "manifest.json").read_text(), (folder / "cases.csv").read_text()]
    with zipfile.ZipFile(folder / "cases.xlsx") as archive:
        parts += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
    return "\n".join(parts)


def test_the_second_opinion_is_blind_and_hides_the_suggestion(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    batches, _ = _export(tmp_path, domain, settings, registry, key)
    first = next(b for b in batches if b.opinion_slot == FIRST_OPINION)
    second = next(b for b in batches if b.opinion_slot == SECOND_OPINION)
    for mine, other in ((second, first), (first, second)):
        text = _reviewer_bytes(mine.folder)
        # The person id as a whole token: "sam" inside the column name "qa_sample" is no leak.
        named = re.compile(rf"(?<![\w-]){re.escape(str(other.assignee_id))}(?![\w-])")
        assert other.batch_id not in text and not named.search(text)
    # The senior queue hides the model's suggestion (anchoring); the analyst queue shows it.
    for batch in _of(batches, SENIOR):
        manifest = load_manifest(batch.folder, key)
        assert "suggested_action" not in manifest["columns"] and not manifest["suggested_actions"]
    analyst = load_manifest(_of(batches, ANALYST)[0].folder, key)
    assert "suggested_action" in analyst["columns"] and analyst["suggested_actions"]


def test_folders_and_files_are_owner_only(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    batches, _ = _export(tmp_path, domain, settings, registry, key)
    for batch in batches:
        for folder in (batch.folder.parent, batch.folder):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        for path in batch.folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to act as another user"
)
def test_another_account_cannot_open_a_batch(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    """Adversarial: another account on the machine (uid 65534) tries to read a batch."""
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    batches, _ = _export(tmp_path, domain, settings, registry, key)
    tmp_path.chmod(0o755)  # the test folder itself is not what protects the batch
    for path in (batches[0].folder / "cases.csv", batches[0].folder.parent):
        probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls", str(path)]
        result = subprocess.run(probe, capture_output=True, text=True, check=False)
        assert result.returncode != 0 and "Permission denied" in result.stderr


def test_encrypted_batches_open_only_with_the_assignees_key(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    """Adversarial: another reviewer with a copy of the folder cannot read the cases."""
    registry, pipeline, batches = _encrypted_export(tmp_path, domain, settings, keys, key)
    batch = _of(batches, ANALYST)[0]
    names = sorted(p.name for p in batch.folder.iterdir())
    assert names == ["cases.csv.age", "cases.xlsx.age", "manifest.json"]  # no plaintext
    manifest = load_manifest(batch.folder, key)
    plain = decrypt_with_ssh_key(batch.folder / "cases.csv.age", keys.private(batch.assignee_id))
    assert plain.startswith(b"application_id,verdict,")
    import hashlib

    assert hashlib.sha256(plain).hexdigest() == manifest["files"]["cases.csv"]
    other = "bob" if batch.assignee_id == "ana" else "ana"
    for intruder in (other, "sue", "admin"):
        with pytest.raises(SealingError, match="not encrypted to key"):
            decrypt_with_ssh_key(batch.folder / "cases.xlsx.age", keys.private(intruder))


def test_encryption_skips_people_without_a_usable_key(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    """age cannot encrypt to ECDSA keys: such a person gets no encrypted batch."""
    db = tmp_path / "audit.duckdb"
    register_reviewers(db, keys, {"ana": "analyst"})
    from tests.identity_fixtures import registry_act

    keys.private("eve", "ecdsa")
    with audit_connection(db) as con:
        registry_act(
            con, keys, "admin", "add_person", at=SINCE, person_id="eve", display_name="Eve",
            grants=["consumer_credit:analyst"], keys=[{"public_key": keys.public_line("eve")}],
        )  # fmt: skip
        registry = load_registry(con)
    sealed = _encrypting(_sized(settings, 1))
    batches, _ = _export(tmp_path, domain, sealed, registry, key)
    assert {b.assignee_id for b in _of(batches, ANALYST)} == {"ana"}


def test_staging_folders_are_never_a_batch(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    """A staged but unpublished batch is invisible: its id resolves to no manifest."""
    registry = register_reviewers(tmp_path / "audit.duckdb", keys)
    staged = stage_review_batches(
        review_cases(),
        batch_export(
            domain,
            tmp_path / "batches",
            key,
            context={},
            settings=settings,
            assigner=Assigner(registry, domain.name, CREATED),
        ),  # fmt: skip
    )
    for batch in staged.batches:
        with pytest.raises(ManifestError, match="unknown batch"):
            load_manifest(batch_folder(tmp_path / "batches", batch.batch_id), key)
    staged.discard()
    left = [p for p in (tmp_path / "batches").rglob("*") if p.name.startswith(".tmp-")]
    assert left == []
    assert len(staged.batches) == 4  # analysts, senior single, two four-eyes opinions


def test_an_encrypting_domain_never_writes_an_unassigned_plaintext_batch(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, key: bytes
) -> None:
    sealed = _encrypting(settings)
    with pytest.raises(ValueError, match="needs an assignee to encrypt to"):
        stage_review_batches(
            review_cases(),
            batch_export(domain, tmp_path / "batches", key, context={}, settings=sealed),
        )  # fmt: skip
    assert [p for p in (tmp_path / "batches").rglob("*") if p.is_file()] == []


def test_a_handed_over_encrypted_batch_opens_only_for_the_new_assignee(
    tmp_path: Path, domain: DomainConfig, settings: ReviewSettings, keys: Keyring, key: bytes
) -> None:
    from hitl_gate.review.export.handover import hand_over

    registry, pipeline, batches = _encrypted_export(tmp_path, domain, settings, keys, key)
    batch = _of(batches, ANALYST)[0]
    assert batch.assignee_id == "ana"
    moved = hand_over(
        tmp_path / "batches", batch.batch_id, to="bob", key=key, registry=registry,
        pipeline=pipeline, at=CREATED,
    )  # fmt: skip
    assert moved == tmp_path / "batches" / "bob" / batch.batch_id and not batch.folder.exists()
    assert load_manifest(moved, key)["assignee_id"] == "bob"
    assert decrypt_with_ssh_key(moved / "cases.csv.age", keys.private("bob"))
    with pytest.raises(SealingError):
        decrypt_with_ssh_key(moved / "cases.csv.age", keys.private("ana"))


def test_one_batch_a_day_alternates_between_people_and_reruns_agree(
    tmp_path: Path, domain: DomainConfig, keys: Keyring, key: bytes
) -> None:
    """Ties on a day's load go to whoever had fewer cases on earlier days, not always to the
    first id; re-exporting one day alone chooses what the first export chose."""
    from datetime import date

    from hitl_gate.review.export.days import export_review_days
    from tests.unit.review.test_reassignment import routed

    db = tmp_path / "audit.duckdb"
    register_reviewers(db, keys)
    days = [date(2018, 3, d) for d in (1, 2, 3)]
    frames = [
        routed().with_columns(pl.col("application_id") + f"-{day.day}", partition_date=pl.lit(day))
        for day in days
    ]
    all_days = pl.concat(frames).lazy()

    def run(run_days: list, run_id: str) -> dict:
        out = export_review_days(
            lambda: audit_connection(db), all_days, run_days, domain=domain,
            batches_dir=tmp_path / "batches", key=key, created_at=CREATED, run_id=run_id,
        )  # fmt: skip
        return {day: b for day, b in out.batches if b.queue == ANALYST}

    first = run(days, "r1")
    assert [first[d].assignee_id for d in days] == ["ana", "bob", "ana"]
    again = run(days[1:2], "r2")
    assert again[days[1]].batch_id == first[days[1]].batch_id

"""Which domain and day a returned verdict file belongs to (read once, for sensors and assets)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.review.intake.inbox import inbox_files, returned_file, returned_files


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _returned(folder: Path, name: str, batch_id: str | None) -> Path:
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    columns = {"batch_id": [batch_id]} if batch_id is not None else {"case": ["x"]}
    pl.DataFrame(columns).write_csv(path)
    return path


def test_the_day_comes_from_the_batch_id(tmp_path: Path, domain: DomainConfig) -> None:
    path = _returned(tmp_path, "a.csv", "consumer_credit-20180302-credit_analyst-001-abcd")
    returned = returned_file(path, domain)
    assert returned.day == date(2018, 3, 2) and not returned.of_other_domain
    assert returned.batch_id == "consumer_credit-20180302-credit_analyst-001-abcd"


@pytest.mark.parametrize(
    ("batch_id", "other_domain"),
    [
        ("lending_club-20160102-loan_officer-001-abcd", True),  # another domain's batch
        ("consumer_credit-2018XX02-credit_analyst-001", False),  # ours, but no day in it
        (None, False),  # no batch id to read: intake records and rejects it
    ],
)
def test_files_without_a_day_of_this_domain(tmp_path, domain, batch_id, other_domain) -> None:
    returned = returned_file(_returned(tmp_path, "b.csv", batch_id), domain)
    assert returned.day is None
    assert returned.of_other_domain is other_domain


def test_inbox_files_are_in_name_order(tmp_path: Path, domain: DomainConfig) -> None:
    inbox = tmp_path / "inbox"
    _returned(inbox, "z.csv", "consumer_credit-20180301-q-001")
    _returned(inbox, "a.csv", "consumer_credit-20180305-q-001")
    (inbox / "notes.txt").write_text("not a verdict file", encoding="utf-8")
    found = inbox_files(inbox, domain)
    assert [(f.path.name, f.day) for f in found] == [
        ("a.csv", date(2018, 3, 5)),
        ("z.csv", date(2018, 3, 1)),
    ]
    assert inbox_files(tmp_path / "absent", domain) == []
    assert returned_files((inbox / "z.csv",), domain)[0].day == date(2018, 3, 1)


def test_an_unsigned_file_waits_for_its_signature_then_is_taken(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """A reviewer copies the file, then its .sig: intake waits for the signature (it would be
    refused in between), but not for ever: an unsigned file is taken (and refused) after the
    settle time. The run key changes with the signature, so a file refused unsigned and then
    returned signed is taken in again."""
    import os
    from datetime import UTC, datetime

    from hitl_gate.review.intake.inbox import UNSIGNED_SETTLE_SECONDS
    from hitl_gate.review.intake.received import receive_file

    inbox = tmp_path / "inbox"
    path = _returned(inbox, "a.csv", "consumer_credit-20180301-q-001")
    now = datetime.now(UTC)
    returned = returned_file(path, domain)
    assert not returned.signed and not returned.ready(now)
    unsigned_key = returned.intake_key()
    old = now.timestamp() - UNSIGNED_SETTLE_SECONDS - 1
    os.utime(path, (old, old))
    assert returned.ready(now)
    path.with_name("a.csv.sig").write_text("-----BEGIN SSH SIGNATURE-----\n")
    assert returned.signed and returned.ready(now)
    assert returned.intake_key() != unsigned_key
    assert returned.intake_key().startswith(unsigned_key + "-")
    stored = returned_file(receive_file(_returned(tmp_path, "b.csv", "x"), inbox), domain)
    assert not stored.signed and stored.ready(now)  # `hitl review ingest` stored it complete

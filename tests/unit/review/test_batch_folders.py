"""Where intake looks for a batch: the assignee's folder, never a hidden or ambiguous one."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.review.manifest import ManifestError, batch_folder

BATCH = "consumer_credit-20180301-credit_analyst-001-3fa2c1d9"


def test_assigned_batches_live_in_the_assignees_folder(tmp_path: Path) -> None:
    assert batch_folder(tmp_path, BATCH, "ana") == tmp_path / "ana" / BATCH
    (tmp_path / "ana" / BATCH).mkdir(parents=True)
    assert batch_folder(tmp_path, BATCH) == tmp_path / "ana" / BATCH  # found without the id


def test_hidden_and_ambiguous_folders_are_not_a_batch(tmp_path: Path) -> None:
    """A staging folder, a set-aside copy, or the same id under two people: no batch."""
    (tmp_path / ".tmp-x" / BATCH).mkdir(parents=True)
    (tmp_path / ".replaced" / BATCH).mkdir(parents=True)
    assert batch_folder(tmp_path, BATCH) == tmp_path / BATCH  # flat: does not exist
    for person in ("ana", "bob"):
        (tmp_path / person / BATCH).mkdir(parents=True)
    assert not batch_folder(tmp_path, BATCH).exists()


@pytest.mark.parametrize("assignee", ["../ana", ".tmp-x", "a/b", ""])
def test_an_assignee_id_cannot_point_elsewhere(tmp_path: Path, assignee: str) -> None:
    with pytest.raises(ManifestError):
        batch_folder(tmp_path, BATCH, assignee)


def test_a_batch_id_cannot_point_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown batch"):
        batch_folder(tmp_path, "../secrets")

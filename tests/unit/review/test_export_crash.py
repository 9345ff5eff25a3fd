"""Exports and the database agree after any crash (issue 19, item 5).

A real export runs in a child process (forked from the test process's fork server) that dies
(`os._exit`, no clean-up, as a kill would) at one point of the export: after the batch files
are written but before the database commit, or after the commit but before the files are
published. Afterwards no batch exists that the database does not know (nothing anyone can
answer), and the next run completes the export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest

import hitl_gate.review.export.days as days
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.review.assignments import current_assignee
from hitl_gate.review.manifest import ManifestError, batch_folder, load_manifest
from tests.fork_server import FORK_SERVER_GROUP, ForkServer
from tests.key_pool import PooledKeyring
from tests.review_people import register_reviewers
from tests.unit.review.test_reassignment import export_day


def crash_export(db: str, folder: str, key_hex: str, point: str) -> None:
    """The child (`_crash`): a real export that dies at `point`."""
    import hitl_gate.review.export.batches as batches

    def die(*args: object, **kwargs: object) -> None:
        os._exit(17)  # killed: no finally blocks, no clean-up

    if point == "before_commit":
        days.record_review_batches = die  # type: ignore[assignment]
    elif point == "before_publish":
        batches.StagedExport.publish = die  # type: ignore[method-assign,assignment]
    export_day(Path(db), Path(folder), bytes.fromhex(key_hex), load_domain("consumer_credit"))


def _visible_batches(batches_dir: Path, key: bytes) -> dict[str, dict]:
    """Every batch a reviewer or intake can find: verified manifests outside hidden folders."""
    found = {}
    for manifest in batches_dir.rglob("manifest.json"):
        if any(part.startswith(".") for part in manifest.relative_to(batches_dir).parts):
            continue
        loaded = load_manifest(manifest.parent, key)
        found[loaded["batch_id"]] = loaded
    return found


def _recorded(db: Path) -> set[str]:
    with audit_connection(db, read_only=True) as con:
        rows = con.execute("SELECT batch_id FROM review_batches").fetchall()
        return {str(r[0]) for r in rows}


def _crash(fork_server: ForkServer, tmp_path: Path, db: Path, key: bytes, point: str) -> str:
    """`crash_export` in a child forked from the test process's fork server
    (tests/fork_server.py: the libraries imported once, not by a fresh interpreter per
    crash): its exit code, then its output."""
    output = tmp_path / "crash.out"
    child = fork_server.start(
        crash_export, str(db), str(tmp_path / "batches"), key.hex(), point, output=output
    )
    return f"exit {child.join(300)}: {output.read_text()}"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    path = tmp_path / "audit.duckdb"
    register_reviewers(path, PooledKeyring(keys_dir))
    return path


def _commit_fails(con: duckdb.DuckDBPyConnection, *args: object, **kwargs: object) -> None:
    con.execute("SELECT * FROM no_such_table")  # a real database error mid-commit


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [pytest.param("before_commit", marks=pytest.mark.xdist_group(FORK_SERVER_GROUP)),
     "commit_fails"],
)  # fmt: skip
def test_a_crash_before_the_commit_leaves_no_acceptable_batch(
    tmp_path: Path,
    db: Path,
    key: bytes,
    point: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if point == "commit_fails":  # an error, not a kill: it unwinds here as in a subprocess
        monkeypatch.setattr(days, "record_review_batches", _commit_fails)
        with pytest.raises(duckdb.CatalogException, match="no_such_table"):
            export_day(db, tmp_path / "batches", key, load_domain("consumer_credit"))
        monkeypatch.undo()
    else:
        died = _crash(request.getfixturevalue("fork_server"), tmp_path, db, key, point)
        assert died.startswith("exit 17:"), died
    batches_dir = tmp_path / "batches"
    assert _visible_batches(batches_dir, key) == {}
    assert _recorded(db) == set()
    with audit_connection(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM review_assignments").fetchone() == (0,)
    staged = [p for p in batches_dir.rglob(".tmp-*") if p.is_dir()]
    if point == "before_commit":
        assert staged  # the files were written: only in hidden staging folders
        for folder in staged:  # ... and the next run removes them once they are old
            os.utime(folder, (0, 0))
    for folder in staged:  # not even a signed manifest in there counts as a batch
        batch_id = json.loads((folder / "manifest.json").read_text())["batch_id"]
        with pytest.raises(ManifestError, match="unknown batch"):
            load_manifest(batch_folder(batches_dir, batch_id), key)
    # The next run exports everything, and files and records agree.
    done = export_day(db, batches_dir, key, load_domain("consumer_credit"))
    visible = _visible_batches(batches_dir, key)
    assert set(visible) == _recorded(db) == {b.batch_id for _, b in done.batches}
    assert [p for p in batches_dir.rglob(".tmp-*")] == []
    with audit_connection(db, read_only=True) as con:
        for batch_id, manifest in visible.items():
            assert current_assignee(con, batch_id).assignee_id == manifest["assignee_id"]


@pytest.mark.slow
@pytest.mark.xdist_group(FORK_SERVER_GROUP)
def test_a_crash_after_the_commit_is_completed_by_the_next_run(
    tmp_path: Path, db: Path, key: bytes, fork_server: ForkServer
) -> None:
    died = _crash(fork_server, tmp_path, db, key, "before_publish")
    assert died.startswith("exit 17:"), died
    batches_dir = tmp_path / "batches"
    recorded = _recorded(db)
    assert recorded and _visible_batches(batches_dir, key) == {}  # recorded, not yet visible
    done = export_day(db, batches_dir, key, load_domain("consumer_credit"))
    assert (
        {b.batch_id for _, b in done.batches} == recorded == set(_visible_batches(batches_dir, key))
    )
    with audit_connection(db, read_only=True) as con:
        assert con.execute("SELECT count(*), max(seq) FROM review_assignments").fetchone() == (
            len(recorded),
            1,
        )  # no batch assigned twice

"""An intake killed between its commit and its seal is recovered by the next intake, safely.

Attacked as the database writer (and whoever can write the home folder) would, around a real
kill: a forged row beside the interrupted intake, a row added under the interrupted file's
digest, a row edited after the crash, the archived file altered or removed, the reception
backdated to before the reviewer's key was registered, the portal's attestation edited. Each
stays refused and named (table, key, digest), while the genuine rows are re-derived from the
signed file, sealed, and a recovery event is logged once, however often recovery runs.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.recovery import Recovery, recover_interrupted
from hitl_gate.review.intake.sealing import IntakeSealer
from hitl_gate.review.signing import KEY_FILE, load_or_create_key
from tests import intake_seal_fixtures as fx
from tests.fork_server import FORK_SERVER_GROUP, ForkServer
from tests.portal_fixtures import WorldTemplates, portal_verdict
from tests.review_fixtures import IN_TIME, Workspace, make_workspace

LATER = IN_TIME + timedelta(hours=2)

pytestmark = pytest.mark.slow  # ssh-keygen signs verdict files, SoftHSM2 the seals


def _recover(ws: Workspace, root: Path, seal: IntakeSealer | None = None) -> Recovery:
    """The next intake's recovery (run `run-2`), on its writing connection."""
    with audit_connection(ws.db) as con:
        return recover_interrupted(
            con, ws.domain, seal or fx.sealer(root, "run-2"), batches_dir=ws.batches_dir,
            archive_dir=ws.archive, key=ws.key, limits=IntakeLimits(), run_id="run-2", now=LATER,
        )  # fmt: skip


def _events(ws: Workspace) -> list[tuple]:
    with audit_connection(ws.db, read_only=True) as con:
        return con.execute(
            "SELECT file_sha256, origin, signer_id, intake_run_id, recovered_by, verdict_keys "
            "FROM intake_recoveries ORDER BY received_at, file_sha256"
        ).fetchall()


def _interrupted(ws: Workspace, root: Path, rows: dict[int, str]) -> str:
    """A signed file taken in and killed before its seal; its SHA-256."""
    outcome, _ = fx.intake(ws, root, rows, seal=False)
    assert outcome.accepted == len(rows), outcome.summary()
    return outcome.file_sha256


@pytest.fixture(scope="module")
def _declined_template(
    tmp_path_factory: pytest.TempPathFactory, _review_key_file: Path
) -> tuple[Workspace, Path, str]:
    """A workspace whose signed file declining the first case was taken in and killed before
    its seal (`_interrupted`), built once per module at the folder its tests then use, and
    saved beside it.

    The interrupted intake stored absolute paths (the archived file, the batches' folders), so
    the world is put back where it was built rather than copied elsewhere: each test gets the
    same fresh state at the same paths, as if it had built it (the review key placed as the
    `key` fixture places it)."""
    root = tmp_path_factory.mktemp("interrupted") / "world"
    secrets = root / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    shutil.copy2(_review_key_file, secrets / KEY_FILE)
    ws = make_workspace(root, load_or_create_key(secrets))
    sha = _interrupted(ws, root, {0: "decline"})
    saved = Path(shutil.copytree(root, root.with_name("saved"), symlinks=True))
    return ws, saved, sha


@pytest.fixture
def declined(_declined_template: tuple[Workspace, Path, str]) -> tuple[Workspace, Path, str]:
    """`_declined_template`'s world, put back in its folder for this test: the workspace, its
    root (where the sealer's key and checkpoints are) and the interrupted file's SHA-256."""
    template, saved, sha = _declined_template
    shutil.rmtree(template.root, ignore_errors=True)
    shutil.copytree(saved, template.root, symlinks=True)
    ws = replace(template, keyring=None, registered=set(template.registered))
    return ws, ws.root, sha


def _execute(ws: Workspace, sql: str, params: list) -> None:
    with audit_connection(ws.db) as con:
        con.execute(sql, params)


def _all_sealed(ws: Workspace, root: Path) -> None:
    assert "not in the audit log" not in fx.sealed_and_verified(ws.db, root)  # refuses nothing


@pytest.mark.slow
@pytest.mark.xdist_group(FORK_SERVER_GROUP)
@pytest.mark.parametrize(("point", "committed"), [("seal", 2), ("archive", 1)])
def test_a_killed_stage_is_recovered_by_the_next_stage(
    tmp_path: Path, key: bytes, point: str, committed: int, fork_server: ForkServer
) -> None:
    """A real SIGKILL of the stage's process at its seal (both files committed), or right
    after its first file's commit, before that file left the inbox: the next run's stage
    recovers what was committed (same clock, in order), takes the rest in, seals all, once.
    The stage's process is forked from the test process's fork server (tests/fork_server.py:
    the libraries imported once, not again by a fresh interpreter each time)."""
    ws = make_workspace(tmp_path, key)
    first, second = fx.cases(ws)[:2]
    fx.signed_file(ws, {0: "approve"})
    fx.signed_file(ws, {1: "decline"})
    output = tmp_path / "killed-stage.out"
    child = fork_server.start(
        fx.killed_stage, str(tmp_path), IN_TIME.isoformat(), point, output=output
    )
    assert child.join(300) == -signal.SIGKILL, output.read_text()
    assert ws.count("SELECT count(*) FROM verdicts") == committed  # never sealed
    fx.refused_everywhere(ws.db, tmp_path, "verdicts", f"{fx.DOMAIN}/{first}")

    after = fx.stage(ws, tmp_path, "run-2", LATER)
    assert after.recovery.refused == () and after.recovery.seal_refusal is None
    assert len(after.recovery.recovered) == committed, after.recovery.lines()
    assert "interrupted intake of run killed-run recovered" in after.recovery.recovered[0]
    assert after.seal_refusal is None
    for case in (first, second):
        assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{case}") == 1
    events = _events(ws)
    assert [(e[1], e[2], e[3], e[4]) for e in events] == [
        ("file", fx.REVIEWER, "killed-run", "run-2")
    ] * committed
    assert list(ws.inbox.glob("*.csv")) == []  # the first file's inbox copy: a duplicate
    _all_sealed(ws, tmp_path)
    assert fx.stage(ws, tmp_path, "run-3", LATER).recovery == Recovery()  # nothing left
    assert len(_events(ws)) == committed


def test_files_of_one_interrupted_run_are_taken_in_again_in_their_order(
    tmp_path: Path, key: bytes
) -> None:
    """Two files of one run answer the same case: the first taken in makes it final, the
    second's answer becomes a conflict. Replayed in another order the rows would differ;
    replayed in theirs, both files are recovered."""
    ws = make_workspace(tmp_path, key)
    first, second, third = fx.cases(ws)[:3]
    fx.signed_file(ws, {0: "decline", 1: "approve"})  # worked-0-1.csv: taken in first
    fx.signed_file(ws, {0: "approve", 2: "approve"})  # worked-0-2.csv

    def crashing(*_: object) -> None:
        raise RuntimeError("killed at the run's intake seal")

    with pytest.raises(RuntimeError, match="intake seal"):
        fx.stage(ws, tmp_path, "run-1", IN_TIME, seal=crashing)  # type: ignore[arg-type]
    assert ws.count("SELECT count(*) FROM review_escalations WHERE kind = 'conflict'") == 1
    after = fx.stage(ws, tmp_path, "run-2", LATER)
    assert len(after.recovery.recovered) == 2, after.recovery.lines()
    for case in (first, second, third):
        assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{case}") == 1
    assert ws.count("SELECT count(*) FROM verdicts WHERE verdict = 'decline'") == 1
    _all_sealed(ws, tmp_path)


def test_recovery_is_idempotent_even_when_killed_before_its_own_seal(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first = fx.cases(ws)[0]
    sha = _interrupted(ws, tmp_path, {0: "approve"})

    def crashing(*_: object) -> None:
        raise RuntimeError("killed after recording the recovery, before sealing it")

    with pytest.raises(RuntimeError, match="before sealing"):
        _recover(ws, tmp_path, seal=crashing)  # type: ignore[arg-type]
    assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{first}") == 0
    again = _recover(ws, tmp_path)
    assert len(again.recovered) == 1 and again.refused == ()
    assert _recover(ws, tmp_path) == Recovery()  # a third time: nothing to do
    assert [e[0] for e in _events(ws)] == [sha]  # one event, sealed once
    assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{first}") == 1
    assert fx.logged(ws.db, "intake_recovered", sha) == 1
    _all_sealed(ws, tmp_path)


def test_a_forged_row_beside_an_interrupted_intake_stays_refused(
    declined: tuple[Workspace, Path, str],
) -> None:
    ws, root, sha = declined
    first, second = fx.cases(ws)[:2]
    fx.forge_verdict(ws.db, second)  # names a file no intake recorded
    recovery = _recover(ws, root)
    assert len(recovery.recovered) == 1
    assert any(f"verdicts {fx.DOMAIN}/{second}: names file ffffffff" in r for r in recovery.refused)
    assert recovery.seal_refusal is not None and f"{fx.DOMAIN}/{second}" in recovery.seal_refusal
    assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{first}") == 1
    fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{second}")


def test_a_row_forged_under_the_interrupted_files_digest_keeps_the_file_refused(
    declined: tuple[Workspace, Path, str],
) -> None:
    """The insider adds a verdict naming the genuine file: the file's rows are no longer what
    it yields, so none of them is recovered (and the forged one is named)."""
    ws, root, sha = declined
    first, second = fx.cases(ws)[:2]
    fx.forge_verdict(ws.db, second, sha=sha)
    recovery = _recover(ws, root)
    assert recovery.recovered == ()
    (refused,) = recovery.refused
    assert f"verdicts {fx.DOMAIN}/{second} row digest" in refused
    assert "the file yields no such row" in refused
    for case in (first, second):
        fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{case}")
    assert _events(ws) == []


def test_a_row_edited_after_the_crash_is_refused(declined: tuple[Workspace, Path, str]) -> None:
    ws, root, sha = declined
    first = fx.cases(ws)[0]
    _execute(ws, "UPDATE verdicts SET verdict = 'approve' WHERE case_id = ?", [first])
    (refused,) = _recover(ws, root).refused
    assert f"verdicts {fx.DOMAIN}/{first} row digest" in refused
    assert "the file yields digest" in refused
    fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{first}")


def test_a_row_edited_and_backdated_before_the_replay_window_is_refused(
    declined: tuple[Workspace, Path, str],
) -> None:
    """The edited row also claims an earlier reception than its file, as if it were older
    than what the replay puts back: the replay still replaces every row naming the file."""
    ws, root, sha = declined
    first = fx.cases(ws)[0]
    _execute(ws, "UPDATE verdicts SET verdict = 'approve', received_at = ? WHERE case_id = ?",
             [IN_TIME - timedelta(days=1), first])  # fmt: skip
    (refused,) = _recover(ws, root).refused
    assert f"verdicts {fx.DOMAIN}/{first} row digest" in refused
    fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{first}")


def test_the_replay_sees_the_batch_as_it_was_when_the_file_arrived(
    declined: tuple[Workspace, Path, str],
) -> None:
    """The sweep closed the batch after the crash (past due plus grace): the file was taken in
    while it was open, and the replay, put back to that moment, takes it in the same way."""
    ws, root, sha = declined
    first = fx.cases(ws)[0]
    _execute(ws, "INSERT INTO review_batch_closures VALUES (?, ?, 'expired: past due plus "
             "grace', ?)", [ws.batches[fx.ANALYST].batch_id, fx.DOMAIN, LATER])  # fmt: skip
    recovery = _recover(ws, root)
    assert len(recovery.recovered) == 1, recovery.lines()
    assert fx.logged(ws.db, "verdict", f"{fx.DOMAIN}/{first}") == 1


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("altered", "was altered or replaced"),
        ("replaced", "was altered or replaced"),
        ("removed", "cannot be read"),
        ("moved", "not where intake archives it"),
    ],
)
def test_an_interrupted_intake_whose_archived_file_changed_is_refused(
    declined: tuple[Workspace, Path, str], attack: str, reason: str
) -> None:
    """The rows stay as written; the file they claim to come from does not: refused."""
    ws, root, sha = declined
    first = fx.cases(ws)[0]
    archived = ws.archive / f"{sha}.csv"
    if attack == "altered":
        archived.write_bytes(archived.read_bytes().replace(b"decline", b"approve"))
    elif attack == "replaced":  # another genuine file, signed by the same reviewer
        other = fx.signed_file(ws, {0: "approve"})
        archived.write_bytes(other.read_bytes())
    elif attack == "removed":
        archived.unlink()
    else:
        moved = root / "elsewhere" / archived.name
        moved.parent.mkdir()
        archived.rename(moved)
        _execute(ws, "UPDATE verdict_files SET archived_path = ?", [str(moved)])
    (refused,) = _recover(ws, root).refused
    assert reason in refused and "its rows are not recovered" in refused
    fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{first}")


def test_a_reception_backdated_before_the_key_was_registered_is_refused(
    declined: tuple[Workspace, Path, str],
) -> None:
    """The insider moves the reception (file row and verdict row alike) to before the
    reviewer's key was registered: the signature does not verify at that time."""
    ws, root, sha = declined
    first = fx.cases(ws)[0]
    for table in ("verdict_files", "verdicts", "verdict_opinions"):
        _execute(ws, f"UPDATE {table} SET received_at = '2017-06-01 00:00:00+00'", [])
    (refused,) = _recover(ws, root).refused
    assert "signature when received" in refused
    fx.refused_everywhere(ws.db, root, "verdicts", f"{fx.DOMAIN}/{first}")


def test_a_portal_verdict_interrupted_before_its_seal_is_recovered_by_the_next(
    tmp_path: Path,
    portal_worlds: WorldTemplates,
) -> None:
    """The portal's window: its first verdict committed unsealed (a portal without its seal
    stands for one killed there); the next submission recovers it from the portal's signed
    attestation and the archived bytes, then takes its own."""
    world = portal_worlds.make(tmp_path)
    world.ws.person(fx.REVIEWER)
    world.ws.assign(world.batch(fx.ANALYST), fx.REVIEWER)
    first, second = fx.cases(world.ws)[:2]
    assert portal_verdict(world, fx.REVIEWER, fx.ANALYST, first, "approve").accepted == 1
    fx.refused_everywhere(world.ws.db, tmp_path, "verdicts", f"{fx.DOMAIN}/{first}")
    sealed = replace(world.config, place=replace(world.config.place, seal=fx.sealer(tmp_path)))
    world = replace(world, config=sealed)
    assert portal_verdict(world, fx.REVIEWER, fx.ANALYST, second, "decline").accepted == 1
    for case in (first, second):
        assert fx.logged(world.ws.db, "verdict", f"{fx.DOMAIN}/{case}") == 1
    assert [(e[1], e[2], e[4]) for e in _events(world.ws)] == [("portal", fx.REVIEWER, "portal")]
    _all_sealed(world.ws, tmp_path)


def test_a_portal_verdict_whose_attestation_was_edited_is_refused(
    tmp_path: Path, portal_worlds: WorldTemplates
) -> None:
    world = portal_worlds.make(tmp_path)
    world.ws.person(fx.REVIEWER)
    world.ws.assign(world.batch(fx.ANALYST), fx.REVIEWER)
    first = fx.cases(world.ws)[0]
    portal_verdict(world, fx.REVIEWER, fx.ANALYST, first, "approve")
    _execute(world.ws, "UPDATE portal_verdicts SET payload = replace(payload, ?, ?)",
             [fx.REVIEWER, "analyst-12"])  # fmt: skip
    (refused,) = _recover(world.ws, tmp_path).refused
    assert "signature when received" in refused
    fx.refused_everywhere(world.ws.db, tmp_path, "verdicts", f"{fx.DOMAIN}/{first}")
    with audit_connection(world.ws.db, read_only=True) as con:
        assert scalar(con, "SELECT count(*) FROM intake_recoveries") == 0


def test_the_sweep_leaves_the_portals_archived_submissions_to_the_portal(
    tmp_path: Path,
    portal_worlds: WorldTemplates,
) -> None:
    """The portal archives a submission before taking it in; one refused (not the batch's
    assignee) stays archived and unrecorded, and is not restored to the inbox, where it would
    be refused again as an unsigned file."""
    from hitl_gate.review.intake.sweep import sweep_review

    world = portal_worlds.make(tmp_path)
    world.ws.person(fx.REVIEWER)
    world.ws.assign(world.batch(fx.ANALYST), fx.REVIEWER)
    world.ws.person("analyst-12")
    first = fx.cases(world.ws)[0]
    outcome = portal_verdict(world, "analyst-12", fx.ANALYST, first, "approve")
    assert outcome.identity_refused and len(list(world.ws.archive.glob("*.csv"))) == 1
    with audit_connection(world.ws.db) as con:
        report = sweep_review(con, domain=fx.DOMAIN, settings=world.ws.settings,
                              review_dir=tmp_path, now=LATER)  # fmt: skip
    assert report.restored == 0 and report.unrecorded == ()

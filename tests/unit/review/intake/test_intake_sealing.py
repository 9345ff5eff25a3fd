"""Verdicts and opinions are sealed by the intake that writes them (issue 18: step-owned rows).

Attacked as the database writer would: a verdict forged by hand and then sealed by another
seal (end of run, `hitl audit seal`), a forged row present when a genuine intake seals, a row
forged in advance under the key a genuine file will write, and an intake killed after its
insert and before its seal. Each is refused by every seal and named by `verify` with its table,
key and digest; nothing of it is ever logged. The control shows the same forgery sealed when
the seal does not know the tables are intake's own.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import STEP_OWNED, SealRefused, seal_run
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.review.intake.results import IntakeOutcome
from hitl_gate.review.intake.sealing import IntakeSealer, intake_sealer, seal_written
from hitl_gate.review.intake.verdict_files import ingest_verdict_file
from tests.portal_fixtures import make_world, portal_verdict
from tests.review_fixtures import IN_TIME, Workspace, make_workspace, record_batches
from tests.unit.audit.tamper_home import add_row

pytestmark = pytest.mark.slow  # ssh-keygen signs the verdict files, SoftHSM2 the seals

ANALYST = "credit_analyst"
DOMAIN = "consumer_credit"


def _signer(root: Path) -> CheckpointSigner:
    return load_or_create_signing_key(root / "secrets" / "audit.key")


def _sealer(root: Path, run: str = "run-1") -> IntakeSealer:
    return intake_sealer(_signer(root), root / "checkpoints", None, run)


def _cases(ws: Workspace) -> list[str]:
    with (ws.batches[ANALYST].folder / "cases.csv").open(encoding="utf-8") as handle:
        return [row["application_id"] for row in csv.DictReader(handle)]


def _intake(
    ws: Workspace, root: Path, rows: dict[int, str], *, seal: bool = True
) -> tuple[IntakeOutcome, str | None]:
    """What the `reviewer_verdicts` stage does for one signed file: take it in, then seal what
    it wrote on the same connection (`seal=False`: killed between the two)."""
    answers = {
        i: {"verdict": v, "reviewer_id": "analyst-7", "rationale": "ok"} for i, v in rows.items()
    }
    path = ws.fill_csv(ANALYST, f"worked-{'-'.join(map(str, rows))}.csv", answers)
    ws.person("analyst-7")
    ws.assign(ws.batches[ANALYST].batch_id, "analyst-7")
    ws.sign(path, "analyst-7")
    record_batches(ws)
    with audit_connection(ws.db) as con:
        outcome = ingest_verdict_file(
            con, path, domain=ws.domain, batches_dir=ws.batches_dir, archive_dir=ws.archive,
            key=ws.key, run_id="run-1", settings=ws.settings, now=IN_TIME,
        )  # fmt: skip
        refusal = seal_written(con, _sealer(root) if seal else None, outcome.written)
    return outcome, refusal


def _general_seal(db: Path, root: Path, run: str = "end-of-run") -> None:
    """The end-of-run seal (and `hitl audit seal`, retention): step-owned tables refused."""
    with audit_connection(db) as con:
        seal_run(con, run, _signer(root), root / "checkpoints", owned=STEP_OWNED)


def _logged(db: Path, event_type: str, key: str) -> int:
    with audit_connection(db, read_only=True) as con:
        return int(scalar(con, "SELECT count(*) FROM audit_log WHERE entry LIKE ?",
                          [f'%"key":"{key}"%"type":"{event_type}"}}']))  # fmt: skip


def _verify(db: Path, root: Path) -> str:
    with audit_connection(db, read_only=True) as con:
        return verify_audit(con, root / "checkpoints", public_key_hex(_signer(root))).summary()


def _forge_verdict(db: Path, case: str, verdict: str = "approve") -> None:
    """The insider's insert: a plausible final verdict, with their own SQL session."""
    with audit_connection(db) as con:
        add_row(con, "verdicts", 77, domain=DOMAIN, case_id=case, verdict=verdict,
                reviewer_id="analyst-7", batch_id="b", file_sha256="f" * 64)  # fmt: skip


def test_intake_seals_its_own_verdicts_and_later_seals_accept_them(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first = _cases(ws)[0]
    outcome, refusal = _intake(ws, tmp_path, {0: "approve"})
    assert outcome.accepted == 1 and refusal is None
    assert outcome.written["verdict"] == [f"{DOMAIN}/{first}"]
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 1  # sealed by intake itself
    _general_seal(ws.db, tmp_path)  # nothing refused: every verdict was sealed by its intake
    assert "not in the audit log" not in _verify(ws.db, tmp_path)


def test_a_forged_verdict_sealed_by_another_seal_is_refused_and_named(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first, second = _cases(ws)[:2]
    _intake(ws, tmp_path, {0: "approve"})
    _forge_verdict(ws.db, second)
    with pytest.raises(SealRefused) as refused:
        _general_seal(ws.db, tmp_path)
    assert f"verdicts {DOMAIN}/{second}: not written by the step" in str(refused.value)
    with pytest.raises(SealRefused, match=f"{DOMAIN}/{second}"):  # and every later seal
        _general_seal(ws.db, tmp_path, "cli-seal")
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 0
    assert f"verdicts {DOMAIN}/{second}: not in the audit log" in _verify(ws.db, tmp_path)


def test_a_forged_opinion_is_refused_too(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    second = _cases(ws)[1]
    _intake(ws, tmp_path, {0: "approve"})
    with audit_connection(ws.db) as con:  # a forged first opinion for a four-eyes case
        add_row(con, "verdict_opinions", 5, domain=DOMAIN, case_id=second,
                reviewer_id="analyst-12", stage="first", verdict="approve")  # fmt: skip
    with pytest.raises(SealRefused, match=f"verdict_opinions {DOMAIN}/{second}/analyst-12"):
        _general_seal(ws.db, tmp_path)
    assert "not in the audit log" in _verify(ws.db, tmp_path)


def test_a_genuine_intake_seals_its_rows_and_not_a_forged_one_beside_them(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first, second = _cases(ws)[:2]
    _forge_verdict(ws.db, second)  # forged before the genuine file arrives
    outcome, refusal = _intake(ws, tmp_path, {0: "decline"})
    assert outcome.accepted == 1
    assert refusal is not None and f"verdicts {DOMAIN}/{second}: not written" in refusal
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 1
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 0


def test_a_row_forged_under_the_key_a_genuine_file_writes_is_never_claimed(
    tmp_path: Path, key: bytes
) -> None:
    """The insider forges the verdict of the case the reviewer is about to return: the genuine
    row is not inserted over it (the key is taken), and intake claims only keys it inserted,
    so the forged row is not sealed under the genuine file's cover."""
    ws = make_workspace(tmp_path, key)
    first = _cases(ws)[0]
    _forge_verdict(ws.db, first, verdict="approve")
    outcome, _ = _intake(ws, tmp_path, {0: "decline"})
    assert outcome.written.get("verdict", []) == []
    with pytest.raises(SealRefused, match=f"verdicts {DOMAIN}/{first}: not written"):
        _general_seal(ws.db, tmp_path)
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 0
    assert f"verdicts {DOMAIN}/{first}: not in the audit log" in _verify(ws.db, tmp_path)


def test_an_intake_killed_before_its_seal_is_reported_never_accepted(
    tmp_path: Path, key: bytes
) -> None:
    """Killed after its commit, before its seal: the rows are refused by every seal (the next
    intake's included) and named by verify, never logged silently."""
    ws = make_workspace(tmp_path, key)
    first, second = _cases(ws)[:2]
    _intake(ws, tmp_path, {0: "approve"}, seal=False)
    _, refusal = _intake(ws, tmp_path, {1: "approve"})  # the next file's intake
    assert refusal is not None and f"verdicts {DOMAIN}/{first}: not written" in refusal
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 1
    with pytest.raises(SealRefused, match=f"verdicts {DOMAIN}/{first}: not written"):
        _general_seal(ws.db, tmp_path)
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 0
    assert f"verdicts {DOMAIN}/{first}: not in the audit log" in _verify(ws.db, tmp_path)


def test_without_step_ownership_the_forged_verdict_would_be_sealed(
    tmp_path: Path, key: bytes
) -> None:
    """Control: a seal that does not treat verdicts as intake's own logs the forgery."""
    ws = make_workspace(tmp_path, key)
    second = _cases(ws)[1]
    _intake(ws, tmp_path, {0: "approve"})
    _forge_verdict(ws.db, second)
    with audit_connection(ws.db) as con:
        seal_run(con, "laundering", _signer(tmp_path), tmp_path / "checkpoints")
    assert _logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 1


def test_a_portal_verdict_is_sealed_by_the_portal(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    sealed = replace(world.config, place=replace(world.config.place, seal=_sealer(tmp_path)))
    world = replace(world, config=sealed)
    world.ws.person("analyst-7")
    world.ws.assign(world.batch(ANALYST), "analyst-7")
    case = _cases(world.ws)[0]
    outcome = portal_verdict(world, "analyst-7", ANALYST, case, "approve")
    assert outcome.accepted == 1, outcome.summary()
    assert _logged(world.ws.db, "verdict", f"{DOMAIN}/{case}") == 1
    _general_seal(world.ws.db, tmp_path)  # refuses nothing

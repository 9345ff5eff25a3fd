"""Verdicts and opinions are sealed by the intake that writes them (issue 18: step-owned rows).

Attacked as the database writer would: a verdict forged by hand and then sealed by another
seal (end of run, `hitl audit seal`), a forged row present when a genuine intake seals, a row
forged in advance under the key a genuine file will write, and an intake killed after its
insert and before its seal. Each is refused by every seal and named by `verify` with its table,
key and digest; nothing of it is ever logged (the killed intake's rows until the next intake
recovers them: `test_intake_recovery.py`). The control shows the same forgery sealed when the
seal does not know the tables are intake's own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hitl_gate.audit.seal import SealRefused, seal_run
from hitl_gate.core.database import audit_connection
from tests.intake_seal_fixtures import (
    ANALYST,
    DOMAIN,
    cases,
    forge_verdict,
    general_seal,
    intake,
    logged,
    refused_everywhere,
    sealed_and_verified,
    sealer,
    signer,
)
from tests.portal_fixtures import WorldTemplates, portal_verdict
from tests.review_fixtures import Workspace, make_workspace
from tests.unit.audit.tamper_home import add_row

pytestmark = pytest.mark.slow  # ssh-keygen signs the verdict files, SoftHSM2 the seals


def test_intake_seals_its_own_verdicts_and_later_seals_accept_them(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first = cases(ws)[0]
    outcome, refusal = intake(ws, tmp_path, {0: "approve"})
    assert outcome.accepted == 1 and refusal is None
    assert outcome.written["verdict"] == [f"{DOMAIN}/{first}"]
    assert logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 1  # sealed by intake itself
    # Nothing refused (every verdict was sealed by its intake), nothing missing from the log.
    assert "not in the audit log" not in sealed_and_verified(ws.db, tmp_path)


def _forged_after_a_genuine_intake(tmp_path: Path, key: bytes) -> tuple[Workspace, str]:
    """A genuine intake answers the first case, then a verdict for the second is inserted by
    SQL: the workspace and the forged case."""
    ws = make_workspace(tmp_path, key)
    second = cases(ws)[1]
    intake(ws, tmp_path, {0: "approve"})
    forge_verdict(ws.db, second)
    return ws, second


def test_a_forged_verdict_sealed_by_another_seal_is_refused_and_named(
    tmp_path: Path, key: bytes
) -> None:
    ws, second = _forged_after_a_genuine_intake(tmp_path, key)
    refused_everywhere(ws.db, tmp_path, "verdicts", f"{DOMAIN}/{second}")
    with pytest.raises(SealRefused, match=f"{DOMAIN}/{second}"):  # and every later seal
        general_seal(ws.db, tmp_path, "cli-seal")


def test_a_forged_opinion_is_refused_too(tmp_path: Path, key: bytes) -> None:
    ws = make_workspace(tmp_path, key)
    second = cases(ws)[1]
    intake(ws, tmp_path, {0: "approve"})
    with audit_connection(ws.db) as con:  # a forged first opinion for a four-eyes case
        add_row(con, "verdict_opinions", 5, domain=DOMAIN, case_id=second,
                reviewer_id="analyst-12", stage="first", verdict="approve")  # fmt: skip
    refused_everywhere(ws.db, tmp_path, "verdict_opinions", f"{DOMAIN}/{second}/analyst-12")


def test_a_genuine_intake_seals_its_rows_and_not_a_forged_one_beside_them(
    tmp_path: Path, key: bytes
) -> None:
    ws = make_workspace(tmp_path, key)
    first, second = cases(ws)[:2]
    forge_verdict(ws.db, second)  # forged before the genuine file arrives
    outcome, refusal = intake(ws, tmp_path, {0: "decline"})
    assert outcome.accepted == 1
    assert refusal is not None and f"verdicts {DOMAIN}/{second}: not written" in refusal
    assert logged(ws.db, "verdict", f"{DOMAIN}/{first}") == 1
    assert logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 0


def test_a_row_forged_under_the_key_a_genuine_file_writes_is_never_claimed(
    tmp_path: Path, key: bytes
) -> None:
    """The insider forges the verdict of the case the reviewer is about to return: the genuine
    row is not inserted over it (the key is taken), and intake claims only keys it inserted,
    so the forged row is not sealed under the genuine file's cover."""
    ws = make_workspace(tmp_path, key)
    first = cases(ws)[0]
    forge_verdict(ws.db, first, verdict="approve")
    outcome, _ = intake(ws, tmp_path, {0: "decline"})
    assert outcome.written.get("verdict", []) == []
    refused_everywhere(ws.db, tmp_path, "verdicts", f"{DOMAIN}/{first}")


def test_an_intake_killed_before_its_seal_is_refused_by_every_other_seal(
    tmp_path: Path, key: bytes
) -> None:
    """Killed after its commit, before its seal: the rows are refused by every seal (the next
    file's seal included: only recovery, `test_intake_recovery.py`, may log them) and named by
    verify, never logged silently."""
    ws = make_workspace(tmp_path, key)
    first, second = cases(ws)[:2]
    intake(ws, tmp_path, {0: "approve"}, seal=False)
    _, refusal = intake(ws, tmp_path, {1: "approve"})  # the next file's intake and seal
    assert refusal is not None and f"verdicts {DOMAIN}/{first}: not written" in refusal
    assert logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 1
    refused_everywhere(ws.db, tmp_path, "verdicts", f"{DOMAIN}/{first}")


def test_without_step_ownership_the_forged_verdict_would_be_sealed(
    tmp_path: Path, key: bytes
) -> None:
    """Control: a seal that does not treat verdicts as intake's own logs the forgery."""
    ws, second = _forged_after_a_genuine_intake(tmp_path, key)
    with audit_connection(ws.db) as con:
        seal_run(con, "laundering", signer(tmp_path), tmp_path / "checkpoints")
    assert logged(ws.db, "verdict", f"{DOMAIN}/{second}") == 1


def test_a_portal_verdict_is_sealed_by_the_portal(
    tmp_path: Path, portal_worlds: WorldTemplates
) -> None:
    world = portal_worlds.make(tmp_path)
    sealed = replace(world.config, place=replace(world.config.place, seal=sealer(tmp_path)))
    world = replace(world, config=sealed)
    world.ws.person_assigned("analyst-7", world.batch(ANALYST))
    case = cases(world.ws)[0]
    outcome = portal_verdict(world, "analyst-7", ANALYST, case, "approve")
    assert outcome.accepted == 1, outcome.summary()
    assert logged(world.ws.db, "verdict", f"{DOMAIN}/{case}") == 1
    general_seal(world.ws.db, tmp_path)  # refuses nothing

"""`hitl audit seal` and `hitl audit verify` as an operator runs them, on a tampered home."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from tests.unit.audit.tamper_home import DOMAIN, add_row


def test_seal_refuses_an_edit_and_verify_names_it(tmp_path: Path, capsys) -> None:
    """An insert-once table that any seal logs (verdicts are intake's own: see
    test_step_owned_rows)."""
    paths = HitlPaths.at(tmp_path / "home")
    with audit_connection(paths.audit_db) as con:
        for i in (1, 2):
            add_row(con, "reversal_requests", i, domain=DOMAIN, case_id=f"C{i}")
    main(["--home", str(paths.home), "audit", "seal"])
    assert (tmp_path / "home-witness" / "checkpoints.jsonl").exists()
    main(["--home", str(paths.home), "audit", "verify"])  # exits 1 when anything is wrong
    assert "BROKEN" not in capsys.readouterr().out

    with audit_connection(paths.audit_db) as con:
        con.execute("UPDATE reversal_requests SET requested_by = 'x' WHERE case_id = 'C2'")
    with pytest.raises(SystemExit) as refused:
        main(["--home", str(paths.home), "audit", "seal"])
    message = str(refused.value.code)
    assert "reversal_requests demo/C2: insert-once record changed after it was sealed" in message
    assert "hitl audit seal" not in message
    with pytest.raises(SystemExit) as broken:
        main(["--home", str(paths.home), "audit", "verify"])
    assert broken.value.code == 1
    assert "reversal_requests demo/C2: insert-once record changed after it was sealed" in (
        capsys.readouterr().out
    )


def test_verify_compares_with_the_witness_it_is_given(tmp_path: Path, capsys) -> None:
    paths = HitlPaths.at(tmp_path / "home")
    with audit_connection(paths.audit_db) as con:
        add_row(con, "reversal_requests", 1, domain=DOMAIN, case_id="C1")
    main(["--home", str(paths.home), "audit", "seal"])
    with audit_connection(paths.audit_db) as con:  # the whole log and its files, gone
        con.execute("DELETE FROM reversal_requests")
        for table in ("audit_log", "audit_log_index", "audit_seen_rows", "audit_checkpoints"):
            con.execute(f"DELETE FROM {table}")
    for path in paths.checkpoints_dir.glob("*.json"):
        path.unlink()
    main(["--home", str(paths.home), "audit", "verify", "--witness", str(tmp_path / "elsewhere")])
    assert "no witness file" in capsys.readouterr().out  # no witness there: only a note
    with pytest.raises(SystemExit):
        main(["--home", str(paths.home), "audit", "verify"])
    assert "witnessed checkpoint 1" in capsys.readouterr().out


def test_seal_refuses_an_execution_its_step_did_not_seal(tmp_path: Path, capsys) -> None:
    """An execution inserted by SQL is not logged by `hitl audit seal` (only the execution
    step seals executions); both the seal and verify name it."""
    paths = HitlPaths.at(tmp_path / "home")
    with audit_connection(paths.audit_db) as con:
        add_row(con, "executions", 1, domain=DOMAIN, case_id="C1", action="approve")
    with pytest.raises(SystemExit) as refused:
        main(["--home", str(paths.home), "audit", "seal"])
    assert "executions demo/C1: not written by the step that seals" in str(refused.value.code)
    with pytest.raises(SystemExit):
        main(["--home", str(paths.home), "audit", "verify"])
    assert "executions demo/C1: not in the audit log" in capsys.readouterr().out

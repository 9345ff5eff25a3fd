"""Intake sealing and recovery against a real review workspace (issue 18: step-owned rows).

`tests/review_fixtures.make_workspace` (real ssh-keygen keys, a real DuckDB file), a real
checkpoint key, and the intake as the `reviewer_verdicts` stage runs it: a signed file taken
in, then sealed on the same connection, or not (killed in between). `killed_stage` is the
stage itself in a child process that SIGKILLs itself at its seal.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import STEP_OWNED, SealRefused, SealResult, seal_run
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, scalar
from hitl_gate.review.intake.days import ReviewFolders, VerdictIntake, take_in_verdicts
from hitl_gate.review.intake.results import IntakeOutcome
from hitl_gate.review.intake.sealing import IntakeSealer, Written, intake_sealer, seal_written
from hitl_gate.review.intake.verdict_files import ingest_verdict_file
from tests.review_fixtures import IN_TIME, Workspace
from tests.unit.audit.tamper_home import add_row

ANALYST = "credit_analyst"
DOMAIN = "consumer_credit"
REVIEWER = "analyst-7"


def signer(root: Path) -> CheckpointSigner:
    return load_or_create_signing_key(root / "secrets" / "audit.key")


def sealer(root: Path, run: str = "run-1") -> IntakeSealer:
    return intake_sealer(signer(root), root / "checkpoints", None, run)


def cases(ws: Workspace, queue: str = ANALYST) -> list[str]:
    with (ws.batches[queue].folder / "cases.csv").open(encoding="utf-8") as handle:
        return [row["application_id"] for row in csv.DictReader(handle)]


def signed_file(
    ws: Workspace,
    rows: dict[int, str],
    reviewer: str = REVIEWER,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Path:
    """A worked CSV of the analysts' batch answering `rows` (index -> verdict), signed by its
    assignee `reviewer`, waiting in the inbox (`con`: the set-up on a connection the caller
    holds, else on its own)."""
    answers = {
        i: {"verdict": v, "reviewer_id": reviewer, "rationale": "ok"} for i, v in rows.items()
    }
    path = ws.fill_csv(ANALYST, f"worked-{'-'.join(map(str, rows))}.csv", answers)
    if con is None:
        ws.sign_as(path, reviewer, ws.batches[ANALYST].batch_id)
    else:
        ws.sign_as_on(con, path, reviewer, ws.batches[ANALYST].batch_id)
    return path


def intake(
    ws: Workspace, root: Path, rows: dict[int, str], *, seal: bool = True, now: datetime = IN_TIME
) -> tuple[IntakeOutcome, str | None]:
    """What the `reviewer_verdicts` stage does for one signed file: take it in, then seal what
    it wrote on the same connection (`seal=False`: killed between the two). The file's set-up
    (registry, assignment) commits on that connection before intake starts."""
    with audit_connection(ws.db) as con:
        path = signed_file(ws, rows, con=con)
        outcome = ingest_verdict_file(
            con, path, domain=ws.domain, batches_dir=ws.batches_dir, archive_dir=ws.archive,
            key=ws.key, run_id="run-1", settings=ws.settings, now=now,
        )  # fmt: skip
        refusal = seal_written(con, sealer(root) if seal else None, outcome.written)
    return outcome, refusal


def stage(
    ws: Workspace, root: Path, run: str, now: datetime, seal: IntakeSealer | None = None
) -> VerdictIntake:
    """The `reviewer_verdicts` stage over the workspace's inbox (no day to re-export)."""
    routed = pl.LazyFrame(
        schema={"application_id": pl.String, "partition_date": pl.Date}
    )  # no escalated case to export again
    folders = ReviewFolders(ws.batches_dir, ws.inbox, ws.archive)
    with audit_connection(ws.db) as con:
        return take_in_verdicts(
            con, routed, [], domain=ws.domain, folders=folders, key=ws.key, run_id=run,
            now=now, seal=seal or sealer(root, run),
        )  # fmt: skip


def general_seal(db: Path, root: Path, run: str = "end-of-run") -> None:
    """The end-of-run seal (and `hitl audit seal`, retention): step-owned tables refused."""
    with audit_connection(db) as con:
        _general_seal_on(con, root, run)


def _general_seal_on(con: duckdb.DuckDBPyConnection, root: Path, run: str = "end-of-run") -> None:
    seal_run(con, run, signer(root), root / "checkpoints", owned=STEP_OWNED)


def sealed_and_verified(db: Path, root: Path) -> str:
    """A general seal, then verify's summary, on one connection (the seal raises if it
    refuses anything)."""
    with audit_connection(db) as con:
        _general_seal_on(con, root)
        return _verify_summary_on(con, root)


def logged(db: Path, event_type: str, key: str) -> int:
    with audit_connection(db, read_only=True) as con:
        return _logged_on(con, event_type, key)


def _logged_on(con: duckdb.DuckDBPyConnection, event_type: str, key: str) -> int:
    return int(scalar(con, "SELECT count(*) FROM audit_log WHERE entry LIKE ?",
                      [f'%"key":"{key}"%"type":"{event_type}"}}']))  # fmt: skip


def _verify_summary_on(con: duckdb.DuckDBPyConnection, root: Path) -> str:
    return verify_audit(con, root / "checkpoints", public_key_hex(signer(root))).summary()


def forge_verdict(db: Path, case: str, verdict: str = "approve", sha: str = "f" * 64) -> None:
    """The insider's insert: a plausible final verdict, with their own SQL session."""
    with audit_connection(db) as con:
        add_row(con, "verdicts", 77, domain=DOMAIN, case_id=case, verdict=verdict,
                reviewer_id=REVIEWER, batch_id="b", file_sha256=sha)  # fmt: skip


def _killed(con: duckdb.DuckDBPyConnection, written: Written) -> SealResult:
    """The seal of a process killed right after its intake committed: SIGKILL, nothing else."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def _kill_at_archive(path: Path, archived: Path) -> None:
    """Where intake moves a file out of the inbox, right after its rows committed."""
    os.kill(os.getpid(), signal.SIGKILL)


def killed_stage(root: str, now: str, point: str) -> None:
    """Child process: the stage over `root`'s workspace, SIGKILLed when it would seal
    (`point` "seal"), or when it would move its first file out of the inbox, right after
    that file's commit ("archive")."""
    from hitl_gate.core.domain import load_domain
    from hitl_gate.review.intake import verdict_files
    from hitl_gate.review.settings import review_settings
    from hitl_gate.review.signing import load_or_create_key

    base = Path(root)
    domain = load_domain(DOMAIN)
    settings = review_settings(domain)
    assert settings is not None
    ws = Workspace(base, domain, settings, load_or_create_key(base / "secrets"), {})
    if point == "archive":  # the child's own copy of the module: a test-only kill point
        verdict_files._archive = _kill_at_archive  # type: ignore[attr-defined]
    stage(ws, base, "killed-run", datetime.fromisoformat(now), seal=_killed)
    sys.exit("the stage was not killed at its seal")


def refused_everywhere(db: Path, root: Path, table: str, key: str) -> None:
    """The row of `table` under `key` is refused by a general seal (and stays so), never
    logged, and named by verify as not in the log."""
    event_type = {"verdicts": "verdict", "verdict_opinions": "verdict_opinion"}[table]
    with audit_connection(db) as con:  # the seal's connection for the checks after it too
        with pytest.raises(SealRefused, match=f"{table} {key}: not written"):
            _general_seal_on(con, root)
        assert _logged_on(con, event_type, key) == 0
        assert f"{table} {key}: not in the audit log" in _verify_summary_on(con, root)

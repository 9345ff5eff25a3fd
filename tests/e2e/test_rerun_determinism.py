"""Determinism: re-materialising a day with the same inputs, model version and policy version
gives byte-identical decisions.

Compared, before and after a real re-run of one demo day (`hitl run --partition`):
- the stored partition files of the deciding stages (`case_features`, `risk_scores`,
  `routed_decisions`), byte for byte: these frames carry no run id or wall-clock column (the
  MLflow `model_run_id` names the model, not the run), so nothing is excluded;
- every `decisions` row's canonical digest (SHA-256 of its canonical JSON, as the audit chain
  hashes it), which leaves out exactly the run id and the wall-clock `decided_at`.
The re-run really rewrote them: the files' modification times and the rows' run ids change.
"""

from __future__ import annotations

import pytest

from hitl_gate.app.cli import main
from hitl_gate.audit.events import EVENT_SOURCES, source_sql
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from tests.e2e.test_e2e import _counts

pytestmark = pytest.mark.e2e

DOMAIN, DAY = "consumer_credit", "2018-02-14"
STAGES = ("case_features", "risk_scores", "routed_decisions")


def _snapshot(paths: HitlPaths) -> tuple[dict[str, bytes], dict[str, int], list, set[str]]:
    files = {s: paths.warehouse / DOMAIN / s / f"{DAY}.parquet" for s in STAGES}
    decision = next(s for s in EVENT_SOURCES if s.event_type == "decision")
    assert set(decision.volatile) == {"run_id", "decided_at"}  # all the digest leaves out
    with audit_connection(paths.audit_db, read_only=True) as con:
        sql = source_sql(con, decision, sha256="sha256")
        assert sql is not None
        rows = con.execute(
            f"SELECT case_id, {sql.content_digest}, run_id FROM decisions "
            "WHERE domain = ? AND partition_date = ? ORDER BY case_id",
            [DOMAIN, DAY],
        ).fetchall()
    return (
        {s: p.read_bytes() for s, p in files.items()},
        {s: p.stat().st_mtime_ns for s, p in files.items()},
        [(case, digest) for case, digest, _ in rows],
        {run for *_, run in rows},
    )


def test_rematerialising_a_day_gives_byte_identical_decisions(demo_home: HitlPaths) -> None:
    files, written, digests, runs = _snapshot(demo_home)
    counts = _counts(demo_home)
    assert len(digests) > 50
    main(["--home", str(demo_home.home), "--domain", DOMAIN, "run", "--partition", DAY])
    assert _counts(demo_home) == counts  # no batch, verdict or execution added
    files_after, written_after, digests_after, runs_after = _snapshot(demo_home)
    for stage in STAGES:
        assert written_after[stage] != written[stage], f"{stage} was not re-materialised"
        assert files_after[stage] == files[stage], f"{stage}: stored decisions differ"
    assert runs_after.isdisjoint(runs)  # every decision row was rewritten by the new run
    assert digests_after == digests

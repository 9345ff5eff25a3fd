"""On the demo: the sweep sensor and the review loop export an escalation (the round trips on
small workspaces: tests/unit/review/intake/test_review_escalation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from tests.unit.review.intake.test_review_escalation import COMPLIANCE, SENIOR


@pytest.mark.e2e
def test_sweep_sensor_and_review_loop_export_escalations(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the demo: an escalation raised on a senior case is picked up by the sweep sensor,
    whose run of the review loop exports it to compliance; `hitl review status` shows it."""
    from dagster import DagsterInstance, build_sensor_context

    from hitl_gate.app.cli import main
    from hitl_gate.app.runner import raise_for_failure, run_job
    from hitl_gate.core.domain import load_domain
    from pipelines.jobs import review_loop_job_name
    from pipelines.resources import build_resources
    from pipelines.sensors import build_review_sweep_sensor

    domain = load_domain("consumer_credit")
    with audit_connection(demo_home.audit_db) as con:
        batch_id, case, day = con.execute(
            "SELECT b.batch_id, min(c.case_id), b.partition_date FROM review_batches b "
            "JOIN review_batch_cases c USING (batch_id) WHERE b.domain = ? AND b.queue = ? "
            "AND b.batch_id NOT IN (SELECT batch_id FROM verdicts) "
            "GROUP BY b.batch_id, b.partition_date ORDER BY b.batch_id DESC LIMIT 1",
            [domain.name, SENIOR],
        ).fetchall()[0]
        con.execute(
            "INSERT INTO review_escalations VALUES (?, ?, 'four_eyes_disagreement', ?, ?, ?, ?, "
            "'test: two senior reviewers disagreed', now(), NULL)",
            [f"four_eyes_disagreement:{domain.name}:{case}", domain.name, case, batch_id,
             SENIOR, COMPLIANCE],
        )  # fmt: skip

    sensor = build_review_sweep_sensor(domain)
    resources = build_resources(demo_home)
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance,
            resources={name: resources[name] for name in ("review", "audit_db")},
        )
        requests = [r for r in sensor(context) if r.run_key.startswith("escalate-")]
    assert [r.partition_key for r in requests] == [day.isoformat()]

    result = run_job(
        HitlSettings(paths=demo_home), review_loop_job_name(domain), start=day, end=day
    )
    raise_for_failure(result, "review loop")
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        moved = con.execute(
            "SELECT x.batch_id, b.queue, b.folder FROM escalation_batch_cases x "
            "JOIN escalation_batches b USING (batch_id) WHERE x.case_id = ? AND x.domain = ?",
            [case, domain.name],
        ).fetchall()
    assert len(moved) == 1 and moved[0][1] == COMPLIANCE
    assert (Path(moved[0][2]) / "manifest.json").exists()

    main(["--home", str(demo_home.home), "review", "status"])
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    compliance = next(line.split() for line in lines if line.startswith(COMPLIANCE))
    row = dict(zip(header, compliance, strict=True))
    assert int(row["escalation_batches"]) >= 1 and int(row["open_cases"]) >= 1

"""Recovery: a real run SIGKILLed at each stage in turn, each time re-run, then run to the end.

It adds one case to a day of its own claims home (tests/e2e/claims_home.py; every test gets a
fresh one), so it runs in any order. The claims home is a full pipeline home (a scaffolded
domain, its trained champion, ten decided days, review batches with a backlog) of about 15
cases a day: every stage, its writes and the seal run as on the demo home, at a fraction of
the cost per run, on the worker that holds the claims home (not the demo's).

Each killed run is a child process forked from a server that imported the heavy libraries
once (this process's `multiprocessing` forkserver, tests/fork_server.py), so a kill
costs the run up to that stage, not 20 s of imports. The child kills itself at an exact point,
not after a guessed delay: when Dagster records the step's start (before its code runs), when
its output is ready (its database writes committed, nothing stored or materialised yet), or
half-way through the seal's transaction (entries inserted, not committed).
"""

from __future__ import annotations

import os
import signal

import pytest

from assets.factory import PIPELINE_STAGES
from bench.day_rerun import add_landing_file  # the day's new landing file
from hitl_gate.app.cli import main
from hitl_gate.audit.run_seal import verify_home, verifying_session
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from tests.e2e.claims_home import MIDDLE, ClaimsHome
from tests.e2e.landed import settled
from tests.e2e.test_onboarding import NAME
from tests.fork_server import shared_forkserver

pytestmark = pytest.mark.e2e

NEW_CASE = "CLM-KILL1"
# The first day of the claims home's second run: decided cases of earlier days wait in its
# review backlog, and later days are decided too.
DAY = MIDDLE.isoformat()
MID_SEAL = "MID_SEAL"
WRITERS = ("validated_cases", "routed_decisions", "final_decisions")


def kill_points() -> list[tuple[str, str]]:
    """Every stage's start, the writers' committed-but-unrecorded point, and mid-seal."""
    points = []
    for stage in PIPELINE_STAGES:
        points.append((stage, "STEP_START"))
        if stage in WRITERS:
            points.append((stage, "STEP_OUTPUT"))
        if stage == "audit_lineage":
            points.append((stage, MID_SEAL))
    return points


def run_until_killed(cli: list[str], stage: str, point: str) -> None:
    """Child process: run the day (`cli`: the home's CLI prefix), SIGKILLing this process at
    (`stage`, `point`)."""
    from dagster import DagsterInstance

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if point == MID_SEAL:
        from hitl_gate.audit import seal

        append = seal._Appender.append

        def append_then_die(self, *args, **kwargs) -> None:
            append(self, *args, **kwargs)
            die()  # the seal's transaction is open: entries written, nothing committed

        seal._Appender.append = append_then_die
    else:
        handle = DagsterInstance.handle_new_event

        def handle_then_maybe_die(self, event, **kwargs) -> None:
            step = event.dagster_event
            if (
                step is not None
                and step.event_type_value == point
                and (step.step_key or "").endswith(f"__{stage}")
            ):
                die()
            handle(self, event, **kwargs)

        DagsterInstance.handle_new_event = handle_then_maybe_die
    main([*cli, "run", "--partition", DAY])


def _chain_report(paths: HitlPaths, lineage: bool):
    with verifying_session(paths) as con:
        return verify_home(con, paths, None, lineage=lineage)


def test_run_killed_at_each_stage_is_recovered_by_the_next_run(claims: ClaimsHome) -> None:
    paths = claims.paths
    subdir = load_domain(NAME, [claims.root / "domains"]).landing_subdir
    add_landing_file(paths.home, NEW_CASE, "kill_test.csv", landing_subdir=subdir, day=DAY)
    settled(paths.landing / subdir / DAY / "kill_test.csv")
    context = shared_forkserver()
    for stage, point in kill_points():
        child = context.Process(target=run_until_killed, args=(claims.cli, stage, point))
        child.start()
        child.join(timeout=600)
        assert child.exitcode == -signal.SIGKILL, f"{stage} {point}: not killed ({child.exitcode})"
        report = _chain_report(paths, lineage=False)
        assert report.ok, f"after a kill at {stage} {point}: {report.summary()}"
        with audit_connection(paths.audit_db, read_only=True) as con:
            duplicates = scalar(
                con, "SELECT count(*) - count(DISTINCT (domain, case_id)) FROM executions"
            )
        assert duplicates == 0, f"{stage} {point}"

    main([*claims.cli, "run", "--partition", DAY])
    report = _chain_report(paths, lineage=True)
    assert report.ok, report.summary()
    with audit_connection(paths.audit_db, read_only=True) as con:
        size = int(scalar(con, "SELECT count(*) FROM audit_events"))  # both chains' entries
        executed = int(scalar(con, "SELECT count(*) FROM executions WHERE case_id = ?", [NEW_CASE]))
        logged = int(scalar(con, "SELECT count(*) FROM audit_events WHERE event_type = "
                            "'execution' AND entity_key LIKE ?", [f"%{NEW_CASE}"]))  # fmt: skip
        day = query_frame(
            con, "SELECT * FROM partition_accounting WHERE partition_date = ?", [DAY]
        ).row(0, named=True)
        balanced = scalar(con, "SELECT bool_and(balanced) FROM partition_accounting")
    assert executed == 1 and logged == 1 and balanced
    # no lost case: every application read that day is quarantined, executed or pending
    assert day["rows_read"] == day["rows_quarantined"] + day["executed"] + day["pending_review"]

    main([*claims.cli, "run", "--partition", DAY])  # idempotent re-run
    with audit_connection(paths.audit_db, read_only=True) as con:
        assert int(scalar(con, "SELECT count(*) FROM audit_events")) == size
    assert _chain_report(paths, lineage=True).ok

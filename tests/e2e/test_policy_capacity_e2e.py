"""Reviewer capacity and re-routing, end to end through real Dagster runs in a temp home.

On the claims home (tests/e2e/claims_home.py: a small scaffolded domain whose review queue has
a tiny daily capacity, 10 days decided in two runs of 5 days). It proves:
deferred cases are carried into later days' review batches (across runs too), are never
executed while they wait, and every day's accounting balances. A second test re-routes the
executed days under another activated policy: executed decisions stay final and the
accounting still balances.
"""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.app.scaffold import starter_policy_cases
from tests.e2e.claims_home import CAPACITY, LAST, MIDDLE, RUN_DAYS, ClaimsHome
from tests.e2e.test_onboarding import FIRST_DAY, NAME
from tests.signed_acts_fixtures import demo_signing_key

DAY_BOOKS = """
WITH accepted AS (SELECT partition_date, sum(rows_accepted) AS accepted FROM input_files
                  WHERE domain = $1 GROUP BY ALL),
ex AS (SELECT partition_date, count(*) AS executed FROM executions WHERE domain = $1 GROUP BY ALL),
d AS (SELECT d.partition_date,
             count(*) FILTER (WHERE e.case_id IS NULL) AS pending,
             count(*) FILTER (WHERE review_deferred) AS deferred,
             count(*) FILTER (WHERE review_deferred AND e.case_id IS NOT NULL) AS deferred_executed
      FROM decisions d LEFT JOIN executions e USING (domain, case_id)
      WHERE d.domain = $1 GROUP BY ALL)
SELECT a.partition_date, a.rows_read, a.rows_quarantined, a.executed AS acct_executed,
       a.pending_review, a.balanced, accepted.accepted, coalesce(ex.executed, 0) AS executed,
       coalesce(d.pending, 0) AS pending, coalesce(d.deferred, 0) AS deferred,
       coalesce(d.deferred_executed, 0) AS deferred_executed
FROM partition_accounting a LEFT JOIN accepted USING (partition_date)
LEFT JOIN ex USING (partition_date) LEFT JOIN d USING (partition_date)
WHERE a.domain = $1 ORDER BY a.partition_date
"""


def _assert_books_balance(claims: ClaimsHome, *, rerouted: bool = False) -> pl.DataFrame:
    """Each day: accepted = executed + pending (deferred among them), recorded as balanced.

    After a re-route, executed cases may be routed to review (and deferred) in `decisions`;
    before it, no deferred case may have been executed.
    """
    books = claims.frame(DAY_BOOKS)
    assert books.height == RUN_DAYS
    assert books["balanced"].all(), books.filter(~pl.col("balanced"))
    assert (books["accepted"] == books["executed"] + books["pending"]).all(), books
    assert (books["acct_executed"] == books["executed"]).all()
    assert (books["pending_review"] == books["pending"]).all()
    assert (books["rows_read"] == books["accepted"] + books["rows_quarantined"]).all()
    if not rerouted:
        assert books["deferred_executed"].sum() == 0, "a deferred case was executed"
    return books


@pytest.mark.e2e
def test_deferred_cases_are_carried_into_later_batches_and_never_executed(
    claims: ClaimsHome,
) -> None:
    books = _assert_books_balance(claims)
    assert books["deferred"].sum() > 2 * CAPACITY, "capacity too high to defer anything"
    # Every batched review case: the day of the batch it went to and the case's own day.
    batched = claims.frame(
        """
        SELECT d.case_id, d.partition_date AS own_day, b.partition_date AS batch_day,
               d.review_deferred, d.route
        FROM decisions d JOIN review_batch_cases m USING (domain, case_id)
        JOIN review_batches b USING (batch_id) WHERE d.domain = ?
        """
    )
    per_day = batched.group_by("batch_day").len()
    assert per_day["len"].max() <= CAPACITY, "a day's batches exceed the queue's capacity"
    assert set(batched["route"]) == {"human_review"}
    carried = batched.filter("review_deferred")
    assert (carried["batch_day"] > carried["own_day"]).all()
    assert carried.height > 0
    # Carried across the two runs: deferred in the first, batched in the second.
    assert carried.filter(
        (pl.col("own_day") < MIDDLE) & (pl.col("batch_day") >= MIDDLE)
    ).height > 0  # fmt: skip
    assert (batched.filter(~pl.col("review_deferred"))["batch_day"] == batched.filter(
        ~pl.col("review_deferred"))["own_day"]).all()  # fmt: skip
    # Deferred and never batched: still waiting at the end, never auto-approved or executed.
    waiting = claims.frame(
        "SELECT d.case_id, d.route, e.case_id AS executed FROM decisions d "
        "LEFT JOIN review_batch_cases m USING (domain, case_id) "
        "LEFT JOIN executions e USING (domain, case_id) "
        "WHERE d.domain = ? AND d.review_deferred AND m.case_id IS NULL"
    )
    assert waiting.height > 0 and set(waiting["route"]) == {"human_review"}
    assert waiting["executed"].null_count() == waiting.height
    assert waiting.height + carried.height == books["deferred"].sum()


@pytest.mark.e2e
def test_rerouting_executed_days_keeps_executions_final_and_books_balanced(
    claims: ClaimsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    before = claims.frame(
        "SELECT case_id, action, decided_by, run_id FROM executions WHERE domain = ? "
        "ORDER BY case_id"
    )
    assert before.height > 0
    # v2: the lowest bands, approved automatically under v1, now go to a person.
    folder = claims.root / "policies" / NAME
    policy = yaml.safe_load((folder / "v1.yaml").read_text(encoding="utf-8"))
    policy["version"] = f"{NAME}-v2"
    low = next(r for r in policy["rules"] if r["id"] == "APP-LOW-RISK")
    low.update(outcome="human_review", reason_code="H20", queue=policy["default_queue"], priority=3)
    (folder / "v2.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    domain = yaml.safe_load((claims.root / "domains" / NAME / "domain.yaml").read_text())
    cases = starter_policy_cases(policy, list(domain["model"]["bands"]))
    (folder / "v2.cases.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    owner = demo_signing_key(claims.paths.home, "demo-policy-owner")[1]
    approver = demo_signing_key(claims.paths.home, "demo-policy-approver")[1]
    main([*claims.cli, "policy", "activate", str(folder / "v2.yaml"), "--signing-key", owner,
          "--approval-key", approver])  # fmt: skip
    capsys.readouterr()
    claims.run(FIRST_DAY, LAST)

    rerouted = claims.frame(
        "SELECT d.route, d.policy_version, e.action, e.decided_by FROM decisions d "
        "JOIN executions e USING (domain, case_id) WHERE d.domain = ?"
    )
    assert set(rerouted["policy_version"]) == {f"{NAME}-v2"}
    changed = rerouted.filter(
        (pl.col("route") == "human_review") & (pl.col("decided_by") == "policy")
    )
    assert changed.height > 0, "no executed case was re-routed: the test proves nothing"
    after = claims.frame(
        "SELECT case_id, action, decided_by, run_id FROM executions WHERE domain = ? "
        "ORDER BY case_id"
    )
    assert after.equals(before), "an executed decision changed or a case was executed again"
    _assert_books_balance(claims, rerouted=True)
    sent = claims.frame(
        "SELECT m.case_id FROM review_batch_cases m JOIN executions e USING (domain, case_id) "
        "WHERE m.domain = ? AND e.decided_by = 'policy'"
    )
    assert sent.height == 0, "a case executed automatically was sent for review"

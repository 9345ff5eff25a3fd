"""Policy operations: analysis, QA sampling, kill switch, capacity, activation, CLI, what-if."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.core.database import schema_statements
from hitl_gate.core.domain import PROJECT_ROOT, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.execution.final_actions import final_actions
from hitl_gate.identity.signatures import POLICY
from hitl_gate.identity.signed_acts import sign_payload
from policies.analysis import WARNING, _probe_frame, _representatives, analyse_policy
from policies.control import (
    PolicyControlError,
    approval_payload,
    approve_activation,
    halt_state,
    pending_activation,
    policy_in_force,
)
from policies.decide import capacity_report, decide
from policies.engine import load_policy
from policies.model import QaSampling
from policies.qa import estimate_error_rate, sample_key, wilson_interval
from tests.identity_fixtures import Keyring
from tests.signed_acts_fixtures import activate, keyring, roll_back, staff_policy_people, switch

SCHEMA = {"a": pl.Float64(), "b": pl.Int64(), "band": pl.String()}
V2 = PROJECT_ROOT / "policies" / "consumer_credit" / "v2.yaml"


def _rule(rule_id: str, when: str, outcome: str, **extra: Any) -> dict[str, Any]:
    rule = {"id": rule_id, "text": rule_id, "when": when, "outcome": outcome}
    if outcome == "human_review":
        extra = {"queue": "analyst", "priority": 3, **extra}
    return {**rule, "reason_code": f"RC-{rule_id}", **extra}


def _write(tmp_path: Path, rules: list[dict[str, Any]], name: str = "p.yaml", **top: Any) -> Path:
    data = {
        "version": name.removesuffix(".yaml"),
        "owner": "risk@example",
        "effective_date": "2018-01-01",
        "description": "test",
        "default_outcome": "human_review",
        "default_queue": "analyst",
        "default_priority": 3,
        "rules": rules,
        **top,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- analysis -----------------------------------------------------------------------------------


def test_analysis_finds_dead_and_shadowed_rules_as_errors(tmp_path: Path) -> None:
    policy = load_policy(
        _write(
            tmp_path,
            [
                _rule("dead", "a > 5 AND a < 3", "auto_decline"),
                _rule("decline_b", "b >= 2", "auto_decline"),
                _rule("shadowed", "b > 4", "auto_decline"),  # b > 4 implies b >= 2, earlier
                _rule("approve", "band IN ('A', 'B') AND a < 0.5", "auto_approve"),
            ],
        )
    )
    analysis = analyse_policy(policy, SCHEMA)
    assert analysis.exact and analysis.exhaustive
    errors = {f.rule_ids[0]: f.message for f in analysis.errors}
    assert set(errors) == {"dead", "shadowed"}
    assert "never true" in errors["dead"] and policy.source in errors["dead"]
    assert "'decline_b'" in errors["shadowed"]
    overlaps = [f for f in analysis.findings if f.kind == "contradictory_overlap"]
    assert {f.rule_ids for f in overlaps} == {("approve", "decline_b"), ("approve", "shadowed")}
    assert all(f.severity == WARNING for f in overlaps)


def test_analysis_boundaries_are_exact_and_arithmetic_is_evidence_only(tmp_path: Path) -> None:
    # Reachable only at the literal itself (b = 3) or strictly between 0.1 and 0.2.
    rules = [
        _rule("at_three", "b >= 3 AND b <= 3", "auto_approve"),
        _rule("between", "a > 0.1 AND a < 0.2", "auto_decline"),
    ]
    findings = analyse_policy(load_policy(_write(tmp_path, rules)), SCHEMA).findings
    assert [f.kind for f in findings] == ["contradictory_overlap"]  # b = 3 with a = 0.15
    arithmetic = load_policy(_write(tmp_path, [_rule("r", "a * 2 > 7 AND a < 1", "auto_approve")]))
    analysis = analyse_policy(arithmetic, SCHEMA)
    assert not analysis.exact
    assert [f.severity for f in analysis.findings] == [WARNING]  # unreachable, but unproven


def test_shipped_policies_have_no_analysis_errors() -> None:
    from hitl_gate.quality.case_schema import declared_case_schema
    from policies.control import policy_files

    domain = load_domain("consumer_credit")
    schema = declared_case_schema(domain)
    for path in policy_files(domain):
        analysis = analyse_policy(load_policy(path), schema)
        assert analysis.errors == [], path
        assert analysis.exact


# --- QA sampling, kill switch, capacity --------------------------------------------------------


def _cases(n: int = 2000) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "case_id": [f"C{i:05d}" for i in range(n)],
            "a": [(i % 100) / 100 for i in range(n)],
            "b": [i % 7 for i in range(n)],
            "band": [["A", "B", "C"][i % 3] if i % 11 else "Z" for i in range(n)],
            "partition_date": [date(2018, 1, 1 + i % 2) for i in range(n)],
        }
    )


def _ops_policy(tmp_path: Path, **top: Any):
    rules = [
        _rule("dec", "a >= 0.9", "auto_decline"),
        _rule("rev", "b = 6", "human_review", queue="analyst", priority=2),
        _rule("app", "a < 0.9", "auto_approve"),
    ]
    return load_policy(_write(tmp_path, rules, **top))


def test_qa_sample_is_deterministic_stratified_and_only_automatic(tmp_path: Path) -> None:
    qa = {"rate": 0.05, "rates": {"auto_decline": 0.2}, "strata_column": "band"}
    policy = _ops_policy(tmp_path, qa_sampling={**qa, "min_per_stratum": 3, "queue": "qa"})
    cases = _cases()
    first = decide(policy, cases, "case_id")
    assert first.equals(decide(policy, cases.reverse(), "case_id").reverse())
    sampled = first.filter("qa_sample")
    assert sampled["proposed_route"].is_in(["auto_approve", "auto_decline"]).all()
    assert (sampled["route"] == "human_review").all() and (sampled["review_queue"] == "qa").all()
    assert (sampled["route_override"] == "qa_sample").all()
    strata = first.filter(pl.col("proposed_route") != "human_review").group_by(
        "proposed_route", "band"
    )
    per = strata.agg(pl.col("qa_sample").sum().alias("k"), pl.len().alias("n"))
    assert (per["k"] >= 3).all(), per  # the small band Z is measured too
    declines = per.filter(pl.col("proposed_route") == "auto_decline")
    assert declines["k"].sum() / declines["n"].sum() > 0.1  # the higher rate applies
    # A new policy version (digest) draws a different sample.
    other = dataclasses.replace(policy, digest="another")
    assert not decide(other, cases, "case_id")["qa_sample"].equals(first["qa_sample"])
    assert sample_key(pl.Series(["x"]), "d")[0] == sample_key(pl.Series(["x"]), "d")[0]


def test_wilson_interval_and_error_estimate() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    reviewed = pl.DataFrame(
        {
            "proposed_route": ["auto_approve"] * 10 + ["auto_decline"] * 4,
            "verdict": ["approve"] * 8 + ["decline"] * 2 + ["decline"] * 3 + ["approve"],
            "qa_probability": [0.1] * 10 + [0.5] * 4,
        }
    )
    by = {e.stratum: e for e in estimate_error_rate(reviewed)}
    assert by["auto_approve"].disagreements == 2 and by["auto_approve"].rate == 0.2
    assert by["auto_decline"].rate == 0.25
    overall = by["all automatic"]
    # Weighted: approvals weigh 10, declines 2 -> (2*10 + 1*2) / (10*10 + 4*2)
    assert overall.rate == pytest.approx(22 / 108)
    assert overall.low < overall.rate < overall.high


def test_halt_sends_every_automatic_case_to_review(tmp_path: Path) -> None:
    policy = _ops_policy(tmp_path, halt_queue="halted")
    decided = decide(policy, _cases(), "case_id", halted=True)
    assert (decided["route"] == "human_review").all()
    auto = decided.filter(pl.col("proposed_route") != "human_review")
    assert auto.height > 0
    assert (auto["route_reason_code"] == "HALT").all() and (auto["review_queue"] == "halted").all()
    assert (auto["route_override"] == "halt").all()
    reviews = decided.filter(pl.col("proposed_route") == "human_review")
    assert (
        reviews["route_override"].is_null().all() and (reviews["review_queue"] == "analyst").all()
    )


def test_capacity_defers_overflow_by_priority_then_risk_never_approves(tmp_path: Path) -> None:
    policy = _ops_policy(
        tmp_path, queues={"analyst": {"daily_capacity": 50}}, capacity_order=["a", "b"]
    )
    decided = decide(policy, _cases(), "case_id", halted=True)
    analyst = decided.filter(pl.col("review_queue") == "analyst")
    kept = analyst.filter(~pl.col("review_deferred"))
    assert kept.group_by("partition_date").len()["len"].to_list() == [50, 50]
    assert (decided.filter("review_deferred")["route"] == "human_review").all()
    for day in (date(2018, 1, 1), date(2018, 1, 2)):
        todays = analyst.filter(pl.col("partition_date") == day)
        # Priority 2 (rule rev) first, then the highest a.
        worst_kept = todays.filter(~pl.col("review_deferred")).sort("review_priority", "a")
        best_deferred = todays.filter(pl.col("review_deferred")).sort(
            "review_priority", "a", descending=[False, True]
        )
        kept_last = worst_kept.sort(["review_priority", "a"], descending=[True, False]).row(0)
        assert (kept_last[worst_kept.columns.index("review_priority")], -kept_last[1]) <= (
            best_deferred["review_priority"][0],
            -best_deferred["a"][0],
        )
    report = capacity_report(policy, decided)
    row = report.filter(pl.col("review_queue") == "analyst").row(0, named=True)
    assert row["daily_capacity"] == 50 and row["deferred"] == row["routed"] - 50
    assert row["backlog_days"] == -(-row["deferred"] // 50)


def test_shipped_v2_declares_capacity_and_qa() -> None:
    policy = load_policy(V2)
    assert policy.queue_capacity["senior_underwriter"] > 0
    assert policy.qa_sampling == QaSampling(
        rate=0.02,
        rates={"auto_decline": 0.05},
        strata_column="risk_band",
        min_per_stratum=1,
        queue="qa_review",
        priority=3,
    )


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"queues": {"q": {"daily_capacity": -1}}}, "daily_capacity must be an integer >= 0"),
        ({"queues": {"q": {"capacity": 3}}}, "missing fields ['daily_capacity']"),
        ({"qa_sampling": {"rate": 1.5}}, "is not a share"),
        ({"qa_sampling": {"rate": 0.1, "rates": {"human_review": 0.1}}}, "non-automatic"),
    ],
)
def test_bad_capacity_and_qa_sections_are_named(
    tmp_path: Path, top: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValueError, match="p.yaml") as info:
        load_policy(_write(tmp_path, [_rule("r", "a > 1", "auto_approve")], **top))
    assert expected in str(info.value)


def test_held_cases_are_never_executed_while_halted() -> None:
    routed = pl.DataFrame(
        {
            "case_id": ["1", "2", "3"],
            "partition_date": [date(2018, 1, 1)] * 3,
            "route": ["auto_approve", "auto_decline", "human_review"],
            "policy_version": "v",
            "model_version": "1",
            "reason_codes": [["R01"]] * 3,
        }
    )
    verdicts = pl.DataFrame({"case_id": ["3"], "verdict": ["approve"], "reviewer_id": ["r"]})
    halted = final_actions(routed, verdicts, "case_id", halted=True)
    assert halted["status"].to_list() == ["held", "held", "executed"]
    running = final_actions(routed, verdicts, "case_id")
    assert running["status"].to_list() == ["executed"] * 3


# --- activation, rollback, halt ----------------------------------------------------------------


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(schema_statements())
    return connection


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    return keyring(tmp_path)


@pytest.fixture
def staffed(con: duckdb.DuckDBPyConnection, keys: Keyring) -> duckdb.DuckDBPyConnection:
    staff_policy_people(con, keys)
    return con


@pytest.mark.slow  # signs with ssh-keygen
def test_activation_needs_two_people_and_no_future_date(
    staffed: duckdb.DuckDBPyConnection, keys: Keyring
) -> None:
    domain = load_domain("consumer_credit")
    v2 = load_policy(V2)
    with pytest.raises(PolicyControlError, match="needs 2 different people"):
        activate(staffed, keys, domain, v2, by="ann", approver="ann")
    with pytest.raises(PolicyControlError, match="in the future"):
        activate(staffed, keys, domain, v2, today=date(2018, 2, 1))
    assert policy_in_force(staffed, domain).origin == "bootstrap"


@pytest.mark.slow
def test_a_pending_activation_routes_nothing_until_approved(
    staffed: duckdb.DuckDBPyConnection, keys: Keyring
) -> None:
    domain = load_domain("consumer_credit")
    v2 = load_policy(V2)
    seq = activate(staffed, keys, domain, v2, approver=None)
    assert policy_in_force(staffed, domain).origin == "bootstrap"
    assert pending_activation(staffed, domain.name).seq == seq
    activate_pending = approval_payload(domain.name, pending_activation(staffed, domain.name))
    approve_activation(staffed, domain, sign_payload(activate_pending, keys.private("bob"), POLICY))
    in_force = policy_in_force(staffed, domain)
    assert in_force.policy.digest == v2.digest and in_force.origin == f"activation #{seq + 1}"
    with pytest.raises(PolicyControlError, match="no activation waits|is not pending"):
        pending_activation(staffed, domain.name)


@pytest.mark.slow
def test_rollback_restores_stored_text_as_a_stack(
    staffed: duckdb.DuckDBPyConnection, keys: Keyring, tmp_path: Path
) -> None:
    con = staffed
    domain = load_domain("consumer_credit")
    bootstrap = load_policy(domain.policy_path)
    with pytest.raises(PolicyControlError, match="nothing to roll back"):
        roll_back(con, keys, domain)
    path = _write(tmp_path, [_rule("r", "pd > 0.5", "auto_decline")], name="t1.yaml")
    t1 = load_policy(path)
    activate(con, keys, domain, t1)
    path.write_text("edited after activation: not yaml of a policy", encoding="utf-8")
    in_force = policy_in_force(con, domain)
    assert in_force.policy.digest == t1.digest and in_force.origin == "activation #2"
    activate(con, keys, domain, load_policy(V2))
    assert roll_back(con, keys, domain).digest == t1.digest
    assert roll_back(con, keys, domain).digest == bootstrap.digest
    assert policy_in_force(con, domain).policy.digest == bootstrap.digest
    actions = con.sql(
        "SELECT action, activated_by, approved_by FROM policy_activations ORDER BY seq"
    ).fetchall()
    assert actions == [
        ("activate", "ann", None),
        ("approve", "ann", "bob"),
        ("activate", "ann", None),
        ("approve", "ann", "bob"),
        ("rollback", "cat", None),
        ("rollback", "cat", None),
    ]


@pytest.mark.slow
def test_halt_and_resume_are_recorded_and_refuse_no_ops(
    staffed: duckdb.DuckDBPyConnection, keys: Keyring
) -> None:
    con = staffed
    assert not halt_state(con, "d").halted
    switch(con, keys, "d", halted=True, reason="model drift")
    state = halt_state(con, "d")
    assert state.halted and state.actor == "ann" and state.reason == "model drift"
    with pytest.raises(PolicyControlError, match="already halted"):
        switch(con, keys, "d", halted=True, reason="again")
    with pytest.raises(PolicyControlError, match="needs 2 signatures"):
        switch(con, keys, "d", halted=False, reason="fixed", signers=["bob"])
    switch(con, keys, "d", halted=False, reason="fixed")
    assert not halt_state(con, "d").halted
    rows = con.sql(
        "SELECT actor, second_actor, signer_fingerprint FROM automation_halts ORDER BY seq"
    ).fetchall()
    assert rows == [
        ("ann", None, keys.fingerprint("ann")),
        ("ann", "bob", keys.fingerprint("ann")),
    ]


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_validate_exit_codes(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["policy", "validate", str(V2)])
    assert "OK: the policy can go live" in capsys.readouterr().out
    bad = _write(tmp_path, [_rule("DEAD", "pd > 0.5 AND pd < 0.1", "auto_decline")])
    with pytest.raises(SystemExit, match="INVALID"):
        main(["policy", "validate", str(bad)])
    assert "rule 'DEAD' is unreachable" in capsys.readouterr().out
    unknown = _write(tmp_path, [_rule("U", "nope > 1", "auto_decline")], name="u.yaml")
    with pytest.raises(SystemExit, match=r"rule 'U': condition uses unknown columns \['nope'\]"):
        main(["policy", "validate", str(unknown)])


@pytest.mark.slow  # signs with ssh-keygen
def test_cli_activate_halt_rollback_status(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(hitl_paths.home)]
    keys = keyring(tmp_path)
    key = {name: ["--signing-key", str(keys.private(name))] for name in ("admin", "ann", "bob")}
    main([*home, "people", "add", "admin", "--name", "Admin", "--grant", "*:admin",
          "--public-key", f"{keys.private('admin')}.pub", *key["admin"]])  # fmt: skip
    for name, grants in (("ann", ["*:policy_owner"]), ("bob", ["*:policy_approver", "*:operator"])):
        grant = [f"--grant={g}" for g in grants]
        public = f"{keys.private(name)}.pub"
        main([*home, "people", "add", name, "--name", name, "--public-key", public, *grant,
              *key["admin"]])  # fmt: skip
    activate = [*home, "policy", "activate", "consumer_credit-v2", *key["ann"]]
    with pytest.raises(SystemExit, match="REFUSED: approval .* needs 2 different people"):
        main([*activate, "--approval-key", str(keys.private("ann"))])
    with pytest.raises(SystemExit, match="REFUSED: activation .* does not hold policy_owner"):
        main([*home, "policy", "activate", "consumer_credit-v2", *key["bob"]])
    capsys.readouterr()
    main([*home, "policy", "status"])
    pending = capsys.readouterr().out
    assert "bootstrap)" in pending and "PENDING APPROVAL: consumer_credit-v2" in pending
    main([*home, "policy", "approve", *key["bob"]])
    main([*home, "policy", "halt", *key["ann"], "--reason", "drift"])
    capsys.readouterr()
    main([*home, "policy", "status"])
    out = capsys.readouterr().out
    assert "consumer_credit-v2" in out and "HALTED" in out and "activation #2" in out
    with pytest.raises(SystemExit, match="REFUSED: resume .* needs 2 different people"):
        main([*home, "policy", "resume", *key["bob"], "--second-signing-key",
              str(keys.private("bob")), "--reason", "ok"])  # fmt: skip
    main([*home, "policy", "resume", *key["bob"], "--second-signing-key",
          str(keys.private("ann")), "--reason", "ok"])  # fmt: skip
    main([*home, "policy", "rollback", *key["bob"], "--reason", "undo"])
    capsys.readouterr()
    main([*home, "policy", "status"])
    status = capsys.readouterr().out
    assert status.startswith("consumer_credit: consumer_credit-v1 (") and "running" in status


def test_review_settings_capacity_defers_overflow_unless_the_policy_sets_its_own() -> None:
    """Capacity declared for a queue in review.yaml limits the day's review work."""
    from datetime import date

    from hitl_gate.core.domain import PROJECT_ROOT
    from policies.decide import apply_capacity, with_queue_capacity
    from policies.engine import load_policy

    policy = load_policy(PROJECT_ROOT / "policies" / "consumer_credit" / "v1.yaml")
    assert not policy.queue_capacity  # v1 leaves capacity to the review settings
    merged = with_queue_capacity(policy, {"credit_analyst": 2, "compliance_review": None})
    assert merged.queue_capacity == {"credit_analyst": 2} and merged.digest == policy.digest
    cases = pl.DataFrame(
        {
            "partition_date": [date(2018, 1, 2)] * 5,
            "route": ["human_review"] * 4 + ["auto_approve"],
            "review_queue": ["credit_analyst"] * 4 + [None],
            "review_priority": [3, 1, 2, 1, None],
        },
        schema_overrides={"review_priority": pl.Int32},
    )
    deferred = apply_capacity(merged, cases)["review_deferred"].to_list()
    assert deferred == [True, False, True, False, False]  # the two most urgent go today
    own = with_queue_capacity(
        with_queue_capacity(policy, {"credit_analyst": 3}), {"credit_analyst": 1}
    )
    assert own.queue_capacity == {"credit_analyst": 3}, "a capacity in the policy file wins"


def test_the_probe_product_is_itertools_product_of_the_representatives() -> None:
    # Built column by column, the exhaustive probes are the rows itertools.product gives, in
    # its order (a finding's witness is the first probe row that shows it).
    import itertools

    schema = {"b": pl.Boolean, "i": pl.Int16, "f": pl.Float64, "s": pl.String, "d": pl.Date}
    literals: dict[str, list[object]] = {"i": [3, 7.5, 100], "f": [0.2, 1, 0.7], "s": ["x", "y"]}
    values = {c: _representatives(t, literals.get(c, [])) for c, t in schema.items()}
    for width in range(len(schema) + 1):
        some = dict(list(values.items())[:width])
        rows = list(itertools.product(*some.values()))
        want = pl.DataFrame(rows, schema={c: schema[c] for c in some}, orient="row")
        probes, exhaustive = _probe_frame(some, schema, 250_000, 0)
        assert exhaustive and probes.equals(want) and probes.height == want.height

"""Backtest and shadow routing: replays compare with recorded routes; shadows never act."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml

from hitl_gate.core.database import schema_statements
from policies.backtest import backtest, recorded_decisions
from policies.control import (
    PolicyControlError,
    record_shadow_decisions,
    set_shadow,
    shadow_policy,
)
from policies.engine import load_policy
from policies.route_risk import latest_outcomes
from policies.shadow import compare_shadow, shadow_decisions
from policies.whatif import compare

DAY = date(2018, 1, 2)


def _policy(tmp_path: Path, cut: float, name: str) -> Any:
    rules = [
        {"id": "DEC", "text": "t", "when": f"a >= {cut}", "outcome": "auto_decline",
         "reason_code": "D"},
        {"id": "REV", "text": "t", "when": "a >= 0.5", "outcome": "human_review",
         "reason_code": "R", "queue": "q", "priority": 2},
        {"id": "APP", "text": "t", "when": "a < 0.5", "outcome": "auto_approve",
         "reason_code": "A"},
    ]  # fmt: skip
    data = {"version": name, "owner": "o", "effective_date": "2018-01-01", "description": "d",
            "default_outcome": "human_review", "default_queue": "q", "default_priority": 3,
            "rules": rules}  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_policy(path)


def _cases() -> pl.DataFrame:
    # a = 0.0, 0.1, ..., 0.9: live (cut 0.8) approves 5, reviews 3 (0.5-0.7), declines 2.
    return pl.DataFrame(
        {
            "cid": [f"C{i}" for i in range(10)],
            "a": [i / 10 for i in range(10)],
            "partition_date": [DAY] * 10,
        }  # fmt: skip
    )


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(schema_statements())
    return connection


def test_backtest_compares_with_recorded_routes_verdicts_and_outcomes(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    now = datetime(2018, 1, 2, tzinfo=UTC)
    recorded_routes = ["auto_approve"] * 5 + ["human_review"] * 3 + ["auto_decline"] * 2
    decisions = pl.DataFrame(
        {
            "domain": "d",
            "case_id": [f"C{i}" for i in range(10)],
            "partition_date": DAY,
            "route": recorded_routes,
            "review_queue": [None] * 5 + ["q"] * 3 + [None] * 2,
            "policy_version": "live",
            "run_id": "r",
            "decided_at": now,
        }  # fmt: skip
    )
    con.register("incoming", decisions.to_arrow())
    con.execute("INSERT INTO decisions BY NAME SELECT * FROM incoming")
    # A reviewer declined C5 and approved C7; C6 went bad later, C1 stayed fine.
    for case, verdict in (("C5", "decline"), ("C7", "approve")):
        con.execute(
            "INSERT INTO verdicts VALUES ('d', ?, 'b', ?, NULL, 'x', 'rev', 'f', 1, ?)",
            [case, verdict, now],
        )
    for case, outcome in (("C6", "Charged Off"), ("C1", "Current")):
        con.execute(
            "INSERT INTO outcomes VALUES ('d', ?, ?, ?, 'f', 'sha', 1, true, 'r', ?)",
            [case, outcome, DAY, now],
        )
    recorded = recorded_decisions(con, "d", DAY, DAY)
    assert recorded.height == 10
    # The candidate approves below 0.7 and declines from 0.7: C5, C6 move from review to
    # approval, C7 to decline; C8, C9 stay declined.
    candidate = _policy(tmp_path, 0.7, "cand")
    candidate = load_policy(_rewrite(candidate, "a >= 0.5", "a >= 0.7", "a < 0.5", "a < 0.7"))
    result = backtest(candidate, _cases(), recorded, "cid", bad_outcomes=["Charged Off"])
    assert result.cases == 10
    assert result.changed == 3  # C5, C6 -> approve; C7 -> decline
    matrix = {row["recorded_route"]: row for row in result.transitions.iter_rows(named=True)}
    assert matrix["human_review"]["auto_approve"] == 2
    assert matrix["human_review"]["auto_decline"] == 1
    assert matrix["auto_approve"]["auto_approve"] == 5
    assert result.with_verdict == 2
    assert result.human_declined_auto_approved == 1  # C5
    assert result.human_approved_auto_declined == 1  # C7
    workload = result.workload.row(0, named=True)
    assert (workload["recorded_cases"], workload["candidate_cases"], workload["change"]) == (
        3,
        0,
        -3,
    )
    outcomes = {r["cases"]: r for r in result.outcomes.iter_rows(named=True)}
    newly = outcomes["newly auto-approved by candidate"]
    assert (newly["count"], newly["with_outcome"], newly["bad_outcome"]) == (2, 1, 1)
    assert outcomes["auto-approved as recorded"]["bad_outcome"] == 0


def _rewrite(policy: Any, *pairs: str) -> Path:
    text = policy.text
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        text = text.replace(old, new)
    path = Path(policy.source)
    path.write_text(text, encoding="utf-8")
    return path


def test_shadow_set_clear_is_logged_and_refuses_no_ops(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    candidate = _policy(tmp_path, 0.6, "cand")
    assert shadow_policy(con, "d") is None
    with pytest.raises(PolicyControlError, match="no shadow policy runs"):
        set_shadow(con, "d", None, by="ann")
    with pytest.raises(PolicyControlError, match="--by is required"):
        set_shadow(con, "d", candidate, by=" ")
    assert set_shadow(con, "d", candidate, by="ann", reason="try") == 1
    with pytest.raises(PolicyControlError, match="already runs in shadow"):
        set_shadow(con, "d", candidate, by="ann")
    Path(candidate.source).unlink()  # the stored text routes, not the file
    stored = shadow_policy(con, "d")
    assert stored is not None and stored.digest == candidate.digest
    assert shadow_policy(con, "other") is None
    assert set_shadow(con, "d", None, by="bob") == 2
    assert shadow_policy(con, "d") is None
    assert con.sql("SELECT action, actor FROM policy_shadows ORDER BY seq").fetchall() == [
        ("set", "ann"),
        ("clear", "bob"),
    ]


def test_shadow_decisions_sit_beside_live_routes_and_replace_per_day(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from policies.decide import decide

    live_policy, shadow = _policy(tmp_path, 0.8, "live"), _policy(tmp_path, 0.6, "cand")
    cases = _cases()
    live = decide(live_policy, cases, "cid")
    before = live.clone()
    now = datetime(2018, 1, 3, tzinfo=UTC)
    rows = shadow_decisions(
        shadow, cases, live, case_id="cid", domain="d", halted=False, run_id="r1", now=now
    )
    assert live.equals(before), "shadow routing changed the live frame"
    assert rows["live_route"].to_list() == live["route"].to_list()
    comparison = compare_shadow(rows)
    assert comparison.cases == 10 and comparison.agreement == pytest.approx(0.8)
    assert comparison.newly_auto_approved == 0
    matrix = {r["live_proposed_route"]: r for r in comparison.transitions.iter_rows(named=True)}
    assert matrix["human_review"]["auto_decline"] == 2  # 0.6 and 0.7
    record_shadow_decisions(con, rows, "d", [DAY], shadow.digest)
    record_shadow_decisions(con, rows.head(4), "d", [DAY], shadow.digest)  # a re-run replaces
    other = rows.with_columns(pl.lit("other").alias("policy_digest"))
    record_shadow_decisions(con, other, "d", [DAY], "other")
    counts = con.sql(
        "SELECT policy_digest = 'other', count(*) FROM shadow_decisions GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert counts == [(False, 4), (True, 10)]
    halted = shadow_decisions(
        shadow, cases, live, case_id="cid", domain="d", halted=True, run_id="r1", now=now
    )
    assert set(halted["route"]) == {"human_review"}
    assert halted["proposed_route"].to_list() == rows["proposed_route"].to_list()


# --- end to end on the shared demo home ----------------------------------------------------------


def test_whatif_shows_the_expected_and_observed_bad_rate_per_route(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # pd = a / 2; C10 has no score. Active (cut 0.8): approve C0-C4 and C10, review C5-C7,
    # decline C8-C9. Candidate (cut 0.6, decline wins): approve the same, review C5, decline
    # C6-C9.
    cases = pl.concat(
        [_cases(), pl.DataFrame({"cid": ["C10"], "a": [0.0], "partition_date": [DAY]})]
    ).with_columns(
        pl.when(pl.col("cid") == "C10").then(None).otherwise(pl.col("a") / 2).alias("pd")
    )
    now = datetime(2018, 1, 2, tzinfo=UTC)
    later = date(2018, 6, 1)
    observed = [("C1", "bad", DAY), ("C2", "good", DAY), ("C3", "bad", DAY),
                ("C3", "good", later), ("C5", "bad", DAY), ("C6", "good", DAY),
                ("C9", "bad", DAY), ("X", "bad", DAY)]  # fmt: skip
    for case, outcome, day in observed:  # C3 went bad then recovered: its latest counts
        con.execute(
            "INSERT INTO outcomes VALUES ('d', ?, ?, ?, 'f', ?, 1, true, 'r', ?)",
            [case, outcome, day, f"sha-{day}", now],
        )
    con.execute(
        "INSERT INTO outcomes VALUES ('e', 'C2', 'bad', ?, 'f', 's', 1, true, 'r', ?)", [later, now]
    )  # fmt: skip  (another domain's C2: never this domain's)
    outcomes = latest_outcomes(con, "d")
    result = compare(
        _policy(tmp_path, 0.8, "live"), _policy(tmp_path, 0.6, "cand"), cases, "cid",
        outcomes=outcomes, bad_outcomes=["bad"],
    )  # fmt: skip
    risk = {(r["policy"], r["route"]): r for r in result.risk.iter_rows(named=True)}
    # Hand-computed: mean PD of the route's scored cases; bad / known outcomes.
    expected = {
        ("active", "auto_approve"): (6, 0.10, 1, 3, 1 / 3),  # C1 bad; C2, C3 good
        ("active", "human_review"): (3, 0.30, 0, 2, 1 / 2),  # C5 bad, C6 good, C7 unknown
        ("active", "auto_decline"): (2, 0.425, 0, 1, 1.0),  # C9 bad
        ("candidate", "auto_approve"): (6, 0.10, 1, 3, 1 / 3),
        ("candidate", "human_review"): (1, 0.25, 0, 1, 1.0),  # C5
        ("candidate", "auto_decline"): (4, 0.375, 0, 2, 1 / 2),  # C6 good, C9 bad
    }
    for key, (n, pd, without, known, rate) in expected.items():
        row = risk[key]
        assert (row["cases"], row["without_pd"], row["with_outcome"]) == (n, without, known), key
        assert row["expected_bad_rate"] == pytest.approx(pd), key
        assert row["observed_bad_rate"] == pytest.approx(rate), key
    assert risk[("active", "auto_approve")]["share"] == pytest.approx(6 / 11)


def test_whatif_bad_rate_without_outcomes_is_unknown_not_zero(tmp_path: Path) -> None:
    cases = _cases().with_columns((pl.col("a") / 2).alias("pd"))
    live = _policy(tmp_path, 0.8, "live")
    risk = compare(live, live, cases, "cid").risk
    assert risk["observed_bad_rate"].null_count() == risk.height
    assert risk.filter(pl.col("route") == "auto_approve")["expected_bad_rate"][0] == (
        pytest.approx(0.1)
    )

"""Reviewer quality from recorded opinions: override rate, time per case, agreement, gold."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.review.quality import Period, quality_report
from tests.unit.review.supervision_rows import DAY, DOMAIN, T0, batch, opinion

PERIOD = Period(T0, T0 + timedelta(days=7))


def test_override_rate_counts_only_opinions_with_a_suggestion(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "b1", "credit_analyst", ["c1", "c2", "c3", "c4"], "ana")
        opinion(con, "c1", "b1", "ana", "approve", hours=1, suggested="approve")
        opinion(con, "c2", "b1", "ana", "decline", hours=2, suggested="approve")
        opinion(con, "c3", "b1", "ana", "decline", hours=3, suggested="decline")
        opinion(con, "c4", "b1", "ana", "decline", hours=4)  # queue hid the suggestion
        row = quality_report(con, DOMAIN, PERIOD).reviewers.row(0, named=True)
    assert (row["opinions"], row["with_suggestion"], row["overrides"]) == (4, 3, 1)
    assert row["override_rate"] == pytest.approx(1 / 3)


def test_time_per_case_runs_from_the_reviewers_own_assignment(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "b1", "credit_analyst", ["c1", "c2"], "ana")
        # Reassigned to bob ten hours in: bob's clock starts then, not at the export.
        con.execute(
            "INSERT INTO review_assignments VALUES ('b1', 2, ?, 'credit_analyst', 'bob', 0, "
            "'cho', 'fp', 'sig', 'leave', ?)",
            [DOMAIN, T0 + timedelta(hours=10)],
        )
        opinion(con, "c1", "b1", "bob", "approve", hours=12)
        opinion(con, "c2", "b1", "bob", "approve", hours=20)
        rows = quality_report(con, DOMAIN, PERIOD).reviewers
    bob = rows.filter(rows["reviewer_id"] == "bob").row(0, named=True)
    assert bob["median_hours"] == pytest.approx(6.0)  # 2 and 10 hours
    assert bob["p90_hours"] == pytest.approx(2 + 0.9 * 8)


def test_period_is_half_open_and_must_be_aware(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "b1", "credit_analyst", ["c1", "c2"], "ana")
        opinion(con, "c1", "b1", "ana", "approve", hours=0)
        opinion(con, "c2", "b1", "ana", "approve", hours=24)
        rows = quality_report(con, DOMAIN, Period(T0, T0 + timedelta(hours=24))).reviewers
        assert rows["opinions"].to_list() == [1]
        with pytest.raises(ValueError, match="timezone-aware"):
            quality_report(con, DOMAIN, Period(T0.replace(tzinfo=None), T0.replace(tzinfo=None)))
        with pytest.raises(ValueError, match="empty"):
            quality_report(con, DOMAIN, Period(T0, T0))


def test_pairs_are_one_pair_whoever_held_the_first_opinion(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "e1", "senior_underwriter", ["c1", "c2"], "sue", slot=1)
        batch(con, "e2", "senior_underwriter", ["c1", "c2"], "sam", slot=2, first_batch="e1")
        batch(con, "e3", "senior_underwriter", ["c3"], "sam", slot=1)
        batch(con, "e4", "senior_underwriter", ["c3"], "sue", slot=2, first_batch="e3")
        for case, first, second, a, b in [
            ("c1", "sue", "sam", "approve", "approve"),
            ("c2", "sue", "sam", "decline", "approve"),
            ("c3", "sam", "sue", "decline", "decline"),
        ]:
            opinion(con, case, "x", first, a, hours=1, stage="first")
            opinion(con, case, "x", second, b, hours=2, stage="second")
        pairs = quality_report(con, DOMAIN, PERIOD).pairs
    assert [(p.first, p.second, p.kappa.n) for p in pairs] == [("sam", "sue", 3)]
    # sam's verdicts first: (approve, approve), (approve, decline), (decline, decline):
    # po = 2/3, rows A 2/3 D 1/3, cols A 1/3 D 2/3, pe = 4/9, kappa = (2/9)/(5/9) = 0.4.
    assert pairs[0].kappa.kappa == pytest.approx(0.4)


def test_gold_is_scored_apart_and_left_out_of_real_work_figures(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "a.duckdb") as con:
        batch(con, "b1", "credit_analyst", ["c1", "g1", "g2"], "ana")
        for gold, expected in (("g1", "decline"), ("g2", "approve")):
            con.execute(
                "INSERT INTO review_gold_cases VALUES (?, ?, 'old', ?, 'outcome', "
                "'credit_analyst', ?, ?)",
                [DOMAIN, gold, expected, DAY, T0],
            )
        opinion(con, "c1", "b1", "ana", "approve", hours=1, suggested="approve")
        opinion(con, "g1", "b1", "ana", "decline", hours=1, suggested="approve")
        opinion(con, "g2", "b1", "ana", "decline", hours=1, suggested="approve")
        row = quality_report(con, DOMAIN, PERIOD).reviewers.row(0, named=True)
    assert (row["opinions"], row["overrides"]) == (1, 0)
    assert (row["gold_answered"], row["gold_correct"], row["gold_accuracy"]) == (2, 1, 0.5)

"""Fairness metrics equal hand-computed values on a twenty-case fixture where review widens the
gap between two groups; warn and block thresholds; the `decision_metrics` rows."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from hitl_gate.core.lawful import FairnessLimits, ProtectedAttribute
from hitl_gate.observability.fairness import (
    TABLE_SCHEMA,
    Scores,
    fairness_findings,
    fairness_metrics,
    fairness_table,
    group_rows,
    metric_rows,
    ratio_interval,
    review_effect,
    stage_approvals,
)
from hitl_gate.observability.metrics import METRIC_SCHEMA

DECLINE = ["D", "E"]
RACE = {"race": ProtectedAttribute(category="race", reference="W")}
Z95 = 1.959963984540054


def _case(group: str, band: str, route: str, verdict: str | None, action: str | None, pd: float):
    return {
        "partition_date": date(2024, 3, 1),
        "race": group,
        "risk_band": band,
        "route": route,
        "verdict": verdict,
        "executed_action": action,
        "pd": pd,
    }


def fixture() -> pl.DataFrame:
    """Ten W and ten B cases. Model and policy treat B at 0.75 of W; reviewers approve a W case
    the model would decline and decline two B cases the model would approve."""
    w = [
        *[_case("W", "A", "auto_approve", None, "approve", 0.1) for _ in range(6)],
        *[_case("W", "A", "human_review", "approve", "approve", 0.1) for _ in range(2)],
        _case("W", "E", "human_review", "approve", "approve", 0.3),
        _case("W", "E", "auto_decline", None, "decline", 0.3),
    ]
    b = [
        *[_case("B", "A", "auto_approve", None, "approve", 0.1) for _ in range(4)],
        *[_case("B", "A", "human_review", "decline", "decline", 0.1) for _ in range(2)],
        *[_case("B", "E", "human_review", "decline", "decline", 0.3) for _ in range(2)],
        _case("B", "E", "auto_decline", None, "decline", 0.3),
        _case("B", "E", "human_review", None, None, 0.3),  # verdict still pending
    ]
    return pl.DataFrame([*w, *b])


def _row(table: pl.DataFrame, stage: str, group: str) -> dict:
    return table.filter((pl.col("stage") == stage) & (pl.col("group") == group)).row(0, named=True)


def test_stage_approvals_follow_the_documented_definitions() -> None:
    staged = stage_approvals(fixture(), DECLINE)
    b = staged.filter(pl.col("race") == "B")
    assert b["model_band"].to_list() == [1] * 6 + [0] * 4
    assert b["policy_route"].to_list() == [1] * 6 + [0] * 4  # review keeps the band's proposal
    assert b["human_verdict"].to_list() == [1] * 4 + [0] * 5 + [None]
    assert b["final_action"].to_list() == [1] * 4 + [0] * 5 + [None]


def test_metrics_equal_hand_computed_values_and_review_widens_the_gap() -> None:
    table = fairness_table(fixture(), RACE, DECLINE)
    # Model band: W 8/10, B 6/10 -> AIR 0.75; the policy keeps it.
    for stage in ("model_band", "policy_route"):
        b = _row(table, stage, "B")
        assert (b["n"], b["approvals"], b["reference"]) == (10, 6, "W")
        assert b["air"] == pytest.approx(0.6 / 0.8)
        assert _row(table, stage, "W")["air"] == pytest.approx(1.0)
    # After review: W 9/10, B 4/9 (one pending) -> AIR (4/9)/(9/10) = 40/81.
    b = _row(table, "human_verdict", "B")
    assert (b["n"], b["approvals"]) == (9, 4)
    assert b["air"] == pytest.approx(40 / 81)
    se = math.sqrt(1 / 4 - 1 / 9 + 1 / 9 - 1 / 10)  # Katz: 1/a - 1/n1 + 1/c - 1/n2
    assert b["air_low"] == pytest.approx(math.exp(math.log(40 / 81) - Z95 * se))
    assert b["air_high"] == pytest.approx(math.exp(math.log(40 / 81) + Z95 * se))
    assert b["air_low"] == pytest.approx(0.2312, abs=1e-4)
    assert b["air_high"] == pytest.approx(1.0550, abs=1e-4)
    assert _row(table, "final_action", "B")["air"] == pytest.approx(40 / 81)
    # SMD of PD at the model stage: means 0.18 vs 0.14, pooled SD sqrt((0.096 + 0.064) / 18).
    smd = _row(table, "model_band", "B")["smd"]
    assert smd == pytest.approx(0.04 / math.sqrt(0.16 / 18))
    assert smd == pytest.approx(0.4243, abs=1e-4)
    effect = review_effect(table).filter(pl.col("group") == "B").row(0, named=True)
    assert effect["review_change"] == pytest.approx(40 / 81 - 0.75)
    assert effect["review_change"] < 0, "review widened the disparity"


def test_reference_defaults_to_the_largest_group_and_missing_is_a_group() -> None:
    cases = fixture().with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("race")).alias("race")
    )
    table = fairness_table(cases, {"race": ProtectedAttribute(category="race")}, DECLINE)
    assert set(table["group"]) == {"W", "B", "(missing)"}
    assert set(table["reference"]) == {"B"}, "B has 10 cases, W 9 once one is missing"


def test_a_group_without_approvals_gets_a_finite_interval() -> None:
    air, low, high = ratio_interval(0, 5, 40, 50, 0.95)
    assert air == 0.0 and low is not None and high is not None
    assert 0 < low < 1 < high, "five cases prove nothing: the interval still covers parity"
    _, _, high = ratio_interval(0, 50, 40, 50, 0.95)
    assert high is not None and high < 0.8, "fifty cases without an approval do"
    assert ratio_interval(3, 5, 0, 50, 0.95) == (None, None, None)


def test_warn_and_block_thresholds() -> None:
    small = fairness_table(fixture(), RACE, DECLINE)
    quiet = fairness_findings(small, FairnessLimits())
    assert quiet.adverse_impact.passed, "ten cases a group: below min_group_cases, not blocking"
    warned = fairness_findings(small, FairnessLimits(min_group_cases=5))
    assert not warned.adverse_impact.passed and warned.adverse_impact.severity == "WARN"
    assert "race=B" in warned.adverse_impact.summary
    # 200 cases a group with approval rates 0.9 and 0.5: the whole interval is below 0.8.
    big = pl.DataFrame(
        [_case("W", "A" if i < 180 else "E", "auto_approve" if i < 180 else "auto_decline",
               None, "approve" if i < 180 else "decline", 0.1) for i in range(200)]
        + [_case("B", "A" if i < 100 else "E", "auto_approve" if i < 100 else "auto_decline",
                 None, "approve" if i < 100 else "decline", 0.1 if i < 100 else 0.4)
           for i in range(200)]
    )  # fmt: skip
    blocked = fairness_findings(fairness_table(big, RACE, DECLINE), FairnessLimits())
    assert not blocked.adverse_impact.passed and blocked.adverse_impact.severity == "ERROR"
    assert not blocked.score_gap.passed, "B is scored 1.0 SD riskier"
    equal = big.with_columns(pl.col("race").replace({"B": "W2"}))
    fair = fairness_table(equal.filter(pl.col("race") == "W").vstack(
        equal.filter(pl.col("race") == "W").with_columns(pl.lit("W2").alias("race"))
    ), RACE, DECLINE)  # fmt: skip
    assert fairness_findings(fair, FairnessLimits(min_group_cases=5)).adverse_impact.passed


def test_decision_metrics_rows_per_day() -> None:
    rows = fairness_metrics(fixture(), RACE, DECLINE)
    air = rows.filter(
        (pl.col("metric") == "fairness_air") & (pl.col("dimension") == "race@human_verdict")
    )
    assert dict(zip(air["key"], air["value"], strict=True)) == pytest.approx(
        {"W": 1.0, "B": 40 / 81}
    )
    assert set(rows["metric"]) == {
        "fairness_cases", "fairness_approval_rate", "fairness_air", "fairness_air_low",
        "fairness_air_high", "fairness_smd",
    }  # fmt: skip
    assert fairness_metrics(fixture(), {}, DECLINE).height == 0


def test_the_operations_report_charts_the_ratios_and_lists_the_checks() -> None:
    from datetime import UTC, datetime

    from hitl_gate.observability.report import render_report

    table = fairness_table(fixture(), RACE, DECLINE)
    document = render_report(
        domain="x",
        run_id="r",
        days=[date(2024, 3, 1)],
        as_of=datetime(2024, 3, 2, tzinfo=UTC),
        metrics=fairness_metrics(fixture(), RACE, DECLINE),
        findings=fairness_findings(table, FairnessLimits(min_group_cases=5)).all(),
        links={},
    )
    assert "Adverse impact ratio per protected group and stage" in document
    assert "fairness_adverse_impact" in document and "race=B" in document


def test_a_numeric_attribute_is_measured_in_its_declared_intervals() -> None:
    ages = fixture().with_columns(
        pl.Series("age", ["30"] * 10 + ["70"] * 9 + [None], dtype=pl.String)
    )
    age = {"age": ProtectedAttribute(category="age", bins=[25, 62], reference="[25, 62)")}
    table = fairness_table(ages, age, DECLINE).filter(pl.col("stage") == "model_band")
    assert set(table["group"]) == {"[25, 62)", "[62, inf)", "(missing)"}
    assert _row(table, "model_band", "[62, inf)")["air"] == pytest.approx((6 / 9) / 0.8)


def test_groups_in_text_order_and_the_largest_as_reference_whatever_the_script() -> None:
    """Rows come in Polars' order of the group names (also outside ASCII), the reference is
    the largest group, ties broken by name, and every SMD uses its group's own summary."""
    names = ["中", "é", "Z", "a", "(missing)", "😀", "Ω"]
    counts = pl.DataFrame({"group": names, "n": [5, 9, 9, 3, 9, 2, 4], "approvals": [1] * 7})
    summaries = {g: Scores(n=5, mean=float(i), var=1.0) for i, g in enumerate(names)}
    rows = group_rows(
        counts, summaries.__getitem__, "final_action", "x", ProtectedAttribute(category="age"), 0.9
    )
    assert [r["group"] for r in rows] == pl.Series(names).sort().to_list()
    assert {r["reference"] for r in rows} == {"(missing)"}  # n 9, first of the tied by name
    assert {r["group"]: r["smd"] for r in rows}["a"] == pytest.approx(3.0 - 4.0)


def test_metric_rows_go_day_by_day_then_metric_by_metric_leaving_out_missing_values() -> None:
    def table(*groups: tuple[str, int, float | None]) -> pl.DataFrame:
        return pl.DataFrame(
            [{"stage": "final_action", "attribute": "sex", "category": "sex", "group": g,
              "reference": "M", "n": n, "approvals": n // 2, "approval_rate": 0.5, "air": air,
              "air_low": None, "air_high": None, "smd": None} for g, n, air in groups],
            schema=TABLE_SCHEMA,
        )  # fmt: skip

    first, second = date(2024, 3, 1), date(2024, 3, 2)
    rows = metric_rows(
        [(first, table(("F", 4, 0.5), ("M", 6, None))), (second, table()),
         (date(2024, 3, 3), table(("F", 2, 1.0)))]
    )  # fmt: skip
    dimension = "sex@final_action"
    assert rows.schema == METRIC_SCHEMA
    assert rows.rows() == [
        (first, "fairness_cases", dimension, "F", 4.0),
        (first, "fairness_cases", dimension, "M", 6.0),
        (first, "fairness_approval_rate", dimension, "F", 0.5),
        (first, "fairness_approval_rate", dimension, "M", 0.5),
        (first, "fairness_air", dimension, "F", 0.5),
        (date(2024, 3, 3), "fairness_cases", dimension, "F", 2.0),
        (date(2024, 3, 3), "fairness_approval_rate", dimension, "F", 0.5),
        (date(2024, 3, 3), "fairness_air", dimension, "F", 1.0),
    ]
    assert metric_rows([]).schema == METRIC_SCHEMA and metric_rows([]).height == 0

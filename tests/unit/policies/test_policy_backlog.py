"""Reviewer capacity over days: overflow is carried into the next days' review pools,
ordered by priority then risk, never auto-approved; the backlog is reported."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import yaml

from hitl_gate.review.export.days import review_groups
from policies.capacity import apply_capacity, capacity_report, own_rows
from policies.engine import load_policy

D1, D2, D3 = date(2018, 1, 1), date(2018, 1, 2), date(2018, 1, 3)


def _policy(tmp_path: Path):  # noqa: ANN202
    data = {"version": "cap", "owner": "o", "effective_date": "2018-01-01", "description": "d",
            "default_outcome": "auto_approve", "queues": {"q": {"daily_capacity": 2}},
            "capacity_order": ["pd"], "rules": []}  # fmt: skip
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_policy(path)


def _routed(rows: list[tuple[str, date, str, int | None, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "cid": pl.String,
            "partition_date": pl.Date,
            "route": pl.String,
            "review_priority": pl.Int32,
            "pd": pl.Float64,
        },  # fmt: skip
        orient="row",
    ).with_columns(
        pl.when(pl.col("route") == "human_review").then(pl.lit("q")).alias("review_queue")
    )


def test_overflow_is_carried_day_by_day_by_priority_then_risk(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    routed = _routed([
        ("a", D1, "human_review", 3, 0.01), ("b", D1, "human_review", 3, 0.09),
        ("c", D1, "human_review", 1, 0.02), ("d", D1, "human_review", 3, 0.05),
        ("e", D1, "human_review", 3, 0.03), ("f", D1, "auto_approve", None, 0.0),
        ("g", D2, "human_review", 3, 0.04), ("h", D3, "auto_approve", None, 0.0),
    ])  # fmt: skip
    out = apply_capacity(policy, routed)
    own = own_rows(out)
    assert own["cid"].to_list() == routed["cid"].to_list(), "every case once, in input order"
    assert own.filter(pl.col("cid") == "f")["route"].item() == "auto_approve"
    schedule = dict(zip(own["cid"], own["review_day"], strict=True))
    # D1: c (priority 1), b (pd 0.09). D2: d (0.05) and g (0.04) beat e (0.03), a. D3: e, a.
    assert schedule == {"a": D3, "b": D1, "c": D1, "d": D2, "e": D3, "f": None, "g": D2,
                        "h": None}  # fmt: skip
    deferred = own.filter("review_deferred")["cid"].to_list()
    assert deferred == ["a", "d", "e"]
    carried = out.filter(pl.col("carried_from").is_not_null())
    assert carried.select("cid", "partition_date", "carried_from").rows() == [
        ("a", D3, D1), ("d", D2, D1), ("e", D3, D1),
    ]  # fmt: skip
    assert set(carried["route"]) == {"human_review"} and not carried["review_deferred"].any()
    report = capacity_report(policy, out).select(
        "day", "routed", "carried_in", "deferred", "backlog_after", "backlog_days"
    )
    assert report.rows() == [(D1, 5, 0, 3, 3, 2.0), (D2, 1, 1, 0, 2, 1.0), (D3, 0, 2, 0, 0, 0.0)]


def test_own_rows_keeps_a_frame_without_carried_copies_as_it_is() -> None:
    """Nothing carried (a routed slice): the frame itself, not a filtered copy; a filter
    aligns the chunks of columns put together from several stages, a copy of every one."""
    cases = pl.concat(
        [pl.DataFrame({"cid": ["a", "b"]}), pl.DataFrame({"cid": ["c"]})], rechunk=False
    )
    routed = cases.hstack([pl.Series("carried_from", [None, None, None], pl.Date)])
    assert routed.n_chunks("all") == [2, 1]
    assert own_rows(routed) is routed
    carried = routed.with_columns(pl.Series("carried_from", [None, D1, None], pl.Date))
    assert own_rows(carried)["cid"].to_list() == ["a", "c"]


def test_backlog_from_earlier_runs_competes_and_is_never_rerouted(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    backlog = _routed([("old1", date(2017, 12, 30), "human_review", 3, 0.08),
                       ("old2", date(2017, 12, 31), "human_review", 3, 0.001)])  # fmt: skip
    backlog = backlog.with_columns(pl.lit(True).alias("review_deferred"))
    routed = _routed([("n1", D1, "human_review", 3, 0.05), ("n2", D1, "human_review", 3, 0.02)])
    out = apply_capacity(policy, routed, backlog)
    own = own_rows(out)
    assert own["cid"].to_list() == ["n1", "n2"]
    assert own.filter("review_deferred")["cid"].to_list() == ["n2"]
    carried = out.filter(pl.col("carried_from").is_not_null())
    assert carried.select("cid", "partition_date", "carried_from").rows() == [
        ("old1", D1, date(2017, 12, 30))
    ]
    report = capacity_report(policy, out, backlog).row(0, named=True)
    # Waiting after D1: old2 (earlier backlog) and n2.
    assert (report["carried_in"], report["backlog_after"]) == (1, 2)
    # A waiting case whose queue lost its capacity limit is reviewed on the first day.
    unbounded = apply_capacity(
        policy, routed, backlog.with_columns(pl.lit("gone").alias("review_queue"))
    )
    carried_days = unbounded.filter(pl.col("carried_from").is_not_null())
    assert carried_days["cid"].to_list() == ["old1", "old2"]
    assert set(carried_days["partition_date"]) == {D1}
    # The review export names a carried case's batch after its own day.
    groups = [(d, b, g["cid"].to_list()) for d, b, g in review_groups(out, [D1])]
    assert groups == [(D1, D1, ["n1", "n2"]), (D1, date(2017, 12, 30), ["old1"])]


def test_unbounded_queues_and_frames_without_days_are_scheduled_today(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    routed = _routed([("a", D1, "human_review", 3, 0.0)] * 3).with_columns(
        pl.lit("other").alias("review_queue")
    )
    out = apply_capacity(policy, routed)
    assert out.height == 3 and not out["review_deferred"].any()
    assert set(out["review_day"]) == {D1}
    no_days = apply_capacity(
        policy, _routed([("a", D1, "human_review", 3, 0.0)] * 3).drop("partition_date")
    )
    assert no_days["review_deferred"].to_list() == [False, False, True]

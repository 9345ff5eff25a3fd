"""Stages run in slices of 37 cases give exactly the whole-day results.

On the test's own demo home, with a policy in force whose review queues take 3 cases a day and
whose QA sample is stratified by band, so that QA ranks, capacity ranks, deferrals, carried
copies and a backlog from earlier days all occur: `case_features`, `risk_scores` and
`routed_decisions` run once as whole frames (`HITL_SLICE_ROWS` unset) and once in slices of 37
cases (demo days hold about 110), over a three-day range and then over the next day (which has
that range's backlog). Compared: each
stored partition file (same rows, values, order and types), each Feast feature file and the
audit `decisions` rows, less the run id and the wall-clock columns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.common import stage_key
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HOME_ENV, SLICE_ROWS_ENV, HitlSettings

pytestmark = pytest.mark.e2e

DOMAIN = "consumer_credit"
STAGES = ("case_features", "risk_scores", "routed_decisions")
RANGE = (date(2018, 3, 5), date(2018, 3, 7))
NEXT_DAY = date(2018, 3, 8)
CAPACITY = 3


def _run(first: date, last: date, slice_rows: int | None, patch: pytest.MonkeyPatch):
    from hitl_gate.app.runner import run_job
    from pipelines.jobs import daily_job_name

    if slice_rows is None:
        patch.delenv(SLICE_ROWS_ENV, raising=False)
    else:
        patch.setenv(SLICE_ROWS_ENV, str(slice_rows))
    domain = load_domain(DOMAIN)
    # Review batches too: a case deferred and not batched waits in the next day's backlog.
    only = [stage_key(domain, s) for s in (*STAGES, "review_batches")]
    settings = HitlSettings.from_environ(os.environ)  # as the CLI reads the deployment's
    result = run_job(settings, daily_job_name(domain), start=first, end=last, only=only)
    assert result.success
    return {
        e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }


def _snapshot(paths: HitlPaths, days: list[date]) -> dict[str, pl.DataFrame]:
    frames = {}
    for stage in STAGES:
        for day in days:
            frames[f"{stage}/{day}"] = pl.read_parquet(
                paths.warehouse / DOMAIN / stage / f"{day}.parquet"
            )
    for day in days:
        feast = next(paths.feast_dir.rglob(f"sources/*/{day}.parquet"))
        frames[f"feast/{day}"] = pl.read_parquet(feast).drop("created_timestamp")
    with audit_connection(paths.audit_db, read_only=True) as con:
        frames["decisions"] = query_frame(
            con,
            "SELECT * EXCLUDE (run_id, decided_at) FROM decisions WHERE domain = ? "
            "AND partition_date BETWEEN ? AND ? ORDER BY partition_date, case_id",
            [DOMAIN, min(days), max(days)],
        )
    return frames


@pytest.fixture
def small_capacity_home(demo_home: HitlPaths) -> Iterator[tuple[HitlPaths, pytest.MonkeyPatch]]:
    """The test's demo home, with a policy in force (v2, activated) reviewing `CAPACITY` a day."""
    from policies.model import load_policy_text
    from tests.signed_acts_fixtures import activate, demo_keyring

    source = Path(__file__).parents[2] / "policies" / DOMAIN / "v2.yaml"
    text = re.sub(r"daily_capacity: \d+", f"daily_capacity: {CAPACITY}", source.read_text("utf-8"))
    with pytest.MonkeyPatch.context() as patch:
        for name in HitlSettings(paths=demo_home).to_environ():
            patch.delenv(name, raising=False)
        paths = demo_home
        patch.setenv(HOME_ENV, str(paths.home))
        with audit_connection(paths.audit_db) as con:
            activate(  # signed by the demo policy owner, approved by the demo approver
                con,
                demo_keyring(paths.home),
                load_domain(DOMAIN),
                load_policy_text(text, "small_capacity.yaml"),
                by="demo-policy-owner",
                approver="demo-policy-approver",
            )
        yield paths, patch


def _assert_same(whole: dict[str, pl.DataFrame], sliced: dict[str, pl.DataFrame]) -> None:
    assert whole.keys() == sliced.keys()
    for name, frame in whole.items():
        try:
            assert_frame_equal(sliced[name], frame, check_exact=True)
        except AssertionError as exc:
            raise AssertionError(f"{name}: sliced differs from whole\n{exc}") from None


def test_slices_of_37_cases_equal_the_whole_day(small_capacity_home) -> None:
    paths, patch = small_capacity_home
    days = [date(2018, 3, d) for d in range(RANGE[0].day, RANGE[1].day + 1)]

    _run(*RANGE, None, patch)
    whole = _snapshot(paths, days)
    meta = _run(*RANGE, 37, patch)
    sliced = _snapshot(paths, days)
    routed = whole["decisions"]
    assert routed.height > 3 * 37  # really more than one slice
    assert all(meta[s]["slices"].value > 1 for s in STAGES)
    assert routed["review_deferred"].sum() > 0  # capacity really ranked across slices
    assert any(whole[f"routed_decisions/{d}"]["carried_from"].is_not_null().any() for d in days)
    _assert_same(whole, sliced)

    # The next day: cases deferred in the range wait in the backlog and compete for capacity.
    _run(NEXT_DAY, NEXT_DAY, None, patch)
    whole = _snapshot(paths, [NEXT_DAY])
    meta = _run(NEXT_DAY, NEXT_DAY, 37, patch)
    sliced = _snapshot(paths, [NEXT_DAY])
    assert meta["routed_decisions"]["backlog_from_earlier_days"].value > 0
    assert whole[f"routed_decisions/{NEXT_DAY}"]["carried_from"].is_not_null().any()
    _assert_same(whole, sliced)

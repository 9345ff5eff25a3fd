"""`routed_decisions` and its checks, materialised on a small stored day in a tmp_path home."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from assets.checks import build_checks
from assets.common import stage_key
from assets.policy_checks import build_policy_checks
from assets.routing import build_routing_assets
from hitl_gate.core.database import audit_connection, query_frame
from policies.control import set_shadow
from tests.assets.stores import resources, store_stage, upstream_specs
from tests.signed_acts_fixtures import activate, keyring, staff_policy_people, switch
from tests.unit.routing import frames

pytestmark = pytest.mark.e2e  # materialises the real asset (small frames, a few seconds)

DOMAIN = frames.domain()
KEY = frames.D1.isoformat()
UPSTREAM = ("validated_cases", "case_features", "risk_scores")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with the unit policy in force and one stored day of 30 cases."""
    home = tmp_path / "home"
    with audit_connection(home / "audit.duckdb") as con:
        staff_policy_people(con, keyring(tmp_path))
        activate(con, keyring(tmp_path), DOMAIN, frames.policy(tmp_path))
    for stage, frame in zip(UPSTREAM, frames.stages(frames.day_of_cases(30)), strict=True):
        store_stage(home / "warehouse", DOMAIN, stage, frame, [KEY])
    return home


def _materialize(home: Path, slice_rows: int = 1000):  # noqa: ANN202
    checks = [
        c
        for c in [*build_checks(DOMAIN), *build_policy_checks(DOMAIN)]
        if stage_key(DOMAIN, "routed_decisions") in {k.asset_key for k in c.check_keys}
    ]
    return materialize(
        [*build_routing_assets(DOMAIN), *upstream_specs(DOMAIN, *UPSTREAM), *checks],
        selection=[stage_key(DOMAIN, "routed_decisions")],
        partition_key=KEY,
        resources=resources(home, slice_rows),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _checks(result) -> dict[str, object]:  # noqa: ANN001
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_routed_decisions_stores_the_day_records_decisions_and_passes_its_checks(
    home: Path,
) -> None:
    result = _materialize(home)
    assert result.success
    (event,) = result.asset_materializations_for_node("consumer_credit__routed_decisions")
    meta = {k: v.value for k, v in event.metadata.items()}
    assert meta["rows"] == 30 and meta["policy_version"] == "unit-v1"
    assert meta["automation_halted"] is False and "slices" not in meta
    assert meta["review_deferred"] > 0, "the analyst queue takes 2 cases a day"
    stored = pl.read_parquet(
        home / "warehouse" / "consumer_credit" / "routed_decisions" / f"{KEY}.parquet"
    )
    assert stored.height == 30
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        decisions = query_frame(con, "SELECT route, count(*) AS n FROM decisions GROUP BY ALL")
    routes = dict(decisions.iter_rows())
    assert sum(routes.values()) == 30
    assert {r: meta[f"route_{r}"] for r in routes} == routes
    checks = _checks(result)
    assert checks["one_route_per_case"].passed
    capacity = checks["review_capacity_within_limits"]
    assert not capacity.passed and capacity.metadata["deferred"].value == meta["review_deferred"]
    assert checks["automation_not_halted"].passed


def test_sliced_and_whole_runs_store_the_same_day(home: Path, tmp_path: Path) -> None:
    sliced_home = tmp_path / "sliced"
    shutil.copytree(home, sliced_home)
    assert _materialize(home).success
    result = _materialize(sliced_home, slice_rows=7)
    assert result.success
    (event,) = result.asset_materializations_for_node("consumer_credit__routed_decisions")
    assert event.metadata["slices"].value == 5
    path = Path("warehouse", "consumer_credit", "routed_decisions", f"{KEY}.parquet")
    assert pl.read_parquet(sliced_home / path).equals(pl.read_parquet(home / path))


def test_a_halt_is_seen_by_the_check_and_in_the_metadata(home: Path, tmp_path: Path) -> None:
    with audit_connection(home / "audit.duckdb") as con:
        switch(con, keyring(tmp_path), DOMAIN.name, halted=True, reason="incident")
    result = _materialize(home)
    assert result.success
    (event,) = result.asset_materializations_for_node("consumer_credit__routed_decisions")
    assert event.metadata["automation_halted"].value is True
    halted = _checks(result)["automation_not_halted"]
    assert not halted.passed and halted.metadata["cases_held_for_review_by_halt"].value > 0


def test_an_invalid_policy_fails_the_step_with_its_problems(home: Path, tmp_path: Path) -> None:
    broken = frames.policy(
        tmp_path,
        version="unit-broken",
        rules=[{"id": "X", "text": "t", "when": "no_such_column > 1",
                "outcome": "auto_decline", "reason_code": "D9"}],
    )  # fmt: skip
    with audit_connection(home / "audit.duckdb") as con:
        activate(con, keyring(tmp_path), DOMAIN, broken)
    result = _materialize(home)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "policy unit-broken is invalid and was not applied" in str(failure.event_specific_data)


def test_a_shadow_policy_routes_the_day_whole_beside_the_live_one(
    home: Path, tmp_path: Path
) -> None:
    shadow_folder = tmp_path / "shadow"
    shadow_folder.mkdir()
    stricter = frames.policy(shadow_folder, version="unit-v2", qa_sampling=None)
    with audit_connection(home / "audit.duckdb") as con:
        set_shadow(con, DOMAIN.name, stricter, by="ann", reason="compare")
    result = _materialize(home, slice_rows=7)  # a day with a shadow is never sliced
    assert result.success
    (event,) = result.asset_materializations_for_node("consumer_credit__routed_decisions")
    meta = {k: v.value for k, v in event.metadata.items()}
    assert "slices" not in meta
    assert meta["shadow_policy_version"] == "unit-v2" and meta["shadow_agreement"] == 1.0
    with audit_connection(home / "audit.duckdb", read_only=True) as con:
        stored = query_frame(con, "SELECT count(*) AS n FROM shadow_decisions")
    assert stored["n"].item() == 30


def test_a_shadow_policy_that_does_not_validate_never_stops_live_routing(
    home: Path, tmp_path: Path
) -> None:
    shadow_folder = tmp_path / "shadow"
    shadow_folder.mkdir()
    broken = frames.policy(
        shadow_folder,
        version="unit-bad",
        rules=[{"id": "X", "text": "t", "when": "no_such_column > 1",
                "outcome": "auto_decline", "reason_code": "D9"}],
    )  # fmt: skip
    with audit_connection(home / "audit.duckdb") as con:
        set_shadow(con, DOMAIN.name, broken, by="ann", reason="compare")
    result = _materialize(home)
    assert result.success
    (event,) = result.asset_materializations_for_node("consumer_credit__routed_decisions")
    assert event.metadata["shadow_policy_version"].value == "unit-bad"
    assert "no_such_column" in event.metadata["shadow_error"].value
    assert event.metadata["rows"].value == 30

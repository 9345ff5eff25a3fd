"""The `decision_metrics` asset and its anomaly checks, materialised on a seeded audit database."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.metrics import CHECKS, build_metrics_assets
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.home import HitlPaths
from pipelines.resources import build_resources
from tests.assets.homes import tmp_home
from tests.unit.observability.test_daily import decision_rows, seed

DAY = date(2018, 1, 20)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture
def paths(tmp_path: Path) -> HitlPaths:
    """A home whose audit database holds a day of decisions and four days before it."""
    paths = tmp_home(tmp_path)
    with audit_connection(paths.audit_db) as con:
        for back in range(4, 0, -1):
            day = DAY - timedelta(days=back)
            seed(con, decision_rows(day, ["auto_approve"] * 8 + ["auto_decline"] * 2, "base"))
        seed(con, decision_rows(DAY, ["auto_approve"] * 7 + ["auto_decline"] * 3, "today"))
    return paths


def run_metrics(paths: HitlPaths, domain: DomainConfig, run_config: dict | None = None):
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            build_metrics_assets(domain),
            partition_key=DAY.isoformat(),
            resources=build_resources(paths),
            instance=instance,
            run_config=run_config,
        )


def test_decision_metrics_stores_the_day_and_reports_every_check(
    paths: HitlPaths, domain: DomainConfig
) -> None:
    result = run_metrics(paths, domain)
    assert result.success
    (materialization,) = result.asset_materializations_for_node(f"{domain.name}__decision_metrics")
    metadata = materialization.metadata
    assert metadata["days"].value == 1
    assert metadata["cases"].value == 10
    assert metadata["trace_files"].value == 1 and metadata["traced_cases"].value == 10
    assert Path(metadata["report"].value).is_file()
    assert "mlflow_run_credit_scorecard_v1" in metadata
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(CHECKS)
    assert all(e.asset_key == AssetKey([domain.name, "decision_metrics"]) for e in checks.values())
    with audit_connection(paths.audit_db) as con:
        stored = query_frame(
            con,
            "SELECT value FROM decision_metrics WHERE metric = 'cases' AND dimension = 'all' "
            "AND partition_date = ?",
            [DAY],
        )
    assert stored["value"].to_list() == [10.0]


def test_traces_and_report_can_be_turned_off(paths: HitlPaths, domain: DomainConfig) -> None:
    config = {"write_traces": False, "write_report": False}
    op = f"{domain.name}__decision_metrics"
    result = run_metrics(paths, domain, {"ops": {op: {"config": config}}})
    assert result.success
    (materialization,) = result.asset_materializations_for_node(op)
    assert "traces" not in materialization.metadata
    assert "report" not in materialization.metadata
    assert not paths.home.joinpath("traces").exists()

"""The Definitions load, name every stage of every domain, and keep the asset graph stable."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagster import AssetKey

from hitl_gate.home import HitlPaths

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _graph(paths: HitlPaths) -> dict[str, list[str]]:
    from hitl_gate.runner import load_definitions

    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): sorted(k.to_user_string() for k in graph.get(key).parent_keys)
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    }


def test_definitions_load_with_jobs_schedule_and_sensor(hitl_paths: HitlPaths) -> None:
    from hitl_gate.runner import load_definitions

    defs = load_definitions()
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {
        "consumer_credit_daily",
        "consumer_credit_review_loop",
        "consumer_credit_training",
    }
    assert [s.name for s in repo.schedule_defs] == ["consumer_credit_daily_schedule"]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "consumer_credit_review_sweep",
        "consumer_credit_verdict_inbox",
    ]
    graph = defs.resolve_asset_graph()
    risk = graph.get(AssetKey(["consumer_credit", "risk_scores"]))
    assert AssetKey(["consumer_credit", "trained_model"]) in risk.parent_keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == "consumer_credit"
        assert node.description, f"{key} has no description"


def test_definitions_resources_follow_the_home(hitl_paths: HitlPaths) -> None:
    from hitl_gate.runner import load_definitions

    resources = load_definitions().resources
    assert resources["audit_db"].database == str(hitl_paths.audit_db)
    assert resources["review"].review_dir == str(hitl_paths.review)
    assert resources["io_manager"].base_dir == str(hitl_paths.warehouse)


def test_asset_graph_matches_snapshot(hitl_paths: HitlPaths) -> None:
    """Lineage changes show up in review: update tests/snapshots/asset_graph.json on purpose."""
    graph = _graph(hitl_paths)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(graph, indent=2) + "\n", encoding="utf-8")
    assert SNAPSHOT.exists(), "no snapshot: run with UPDATE_SNAPSHOTS=1 and review the file"
    assert graph == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_dagster_cli_validates_the_workspace(hitl_paths: HitlPaths) -> None:
    """`dagster definitions validate -w workspace.yaml`, as `make validate` and the UI use it."""
    import subprocess
    import sys

    from hitl_gate.domain import PROJECT_ROOT

    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr

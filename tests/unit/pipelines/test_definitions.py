"""The Definitions load, name every stage of every domain, and keep the asset graph stable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import AssetKey

from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import HitlSettings
from tests.fork_server import FORK_SERVER_GROUP, ForkServer

SNAPSHOT = Path(__file__).parents[2] / "snapshots" / "asset_graph.json"


def _graph(paths: HitlPaths) -> dict[str, list[str]]:
    from hitl_gate.app.runner import load_definitions

    defs = load_definitions(HitlSettings(paths=paths))
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): sorted(k.to_user_string() for k in graph.get(key).parent_keys)
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    }


SHIPPED_DOMAINS = ["consumer_credit", "lending_club"]
STAGES = {
    "raw_cases",
    "validated_cases",
    "case_features",
    "trained_model",
    "risk_scores",
    "routed_decisions",
    "review_batches",
    "reviewer_verdicts",
    "final_decisions",
    "audit_lineage",
    "decision_metrics",
}


def test_definitions_load_with_jobs_schedule_and_sensor(hitl_paths: HitlPaths) -> None:
    from hitl_gate.app.runner import load_definitions
    from hitl_gate.core.domain import available_domains

    assert available_domains() == SHIPPED_DOMAINS
    defs = load_definitions(HitlSettings(paths=hitl_paths))
    repo = defs.get_repository_def()
    for domain in SHIPPED_DOMAINS:
        assert {j.name for j in repo.get_all_jobs()} >= {
            f"{domain}_daily",
            f"{domain}_review_loop",
            f"{domain}_training",
        }
    assert sorted(s.name for s in repo.schedule_defs) == [
        f"{d}_daily_schedule" for d in SHIPPED_DOMAINS
    ]
    assert sorted(s.name for s in repo.sensor_defs) == sorted(
        [f"{d}_verdict_inbox" for d in SHIPPED_DOMAINS]
        + [f"{d}_review_sweep" for d in SHIPPED_DOMAINS]
        + [f"{d}_landing_zone" for d in SHIPPED_DOMAINS]
    )
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key} has no description"
        domain, stage = key.path
        # Each domain is its own asset group, and every asset lives in its domain's group.
        assert node.group_name == domain
        groups.setdefault(domain, set()).add(stage)
        for parent in node.parent_keys:
            assert parent.path[0] == domain, f"{key} depends on another domain's {parent}"
    assert groups == {d: STAGES for d in SHIPPED_DOMAINS}
    for domain in SHIPPED_DOMAINS:
        risk = graph.get(AssetKey([domain, "risk_scores"]))
        assert AssetKey([domain, "trained_model"]) in risk.parent_keys


def test_definitions_resources_follow_the_home(hitl_paths: HitlPaths) -> None:
    from hitl_gate.app.runner import load_definitions

    resources = load_definitions(HitlSettings(paths=hitl_paths)).resources
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


def validate_workspace(root: str) -> None:
    """`dagster definitions validate -w workspace.yaml` in `root`, as the `dagster` script
    runs it (in a forked child: the command changes its process's logging and environment)."""
    import sys

    from dagster._cli import main

    os.chdir(root)
    sys.argv = ["dagster", "definitions", "validate", "-w", "workspace.yaml"]
    main()


@pytest.mark.slow  # a child process loading the workspace
@pytest.mark.xdist_group(FORK_SERVER_GROUP)
def test_dagster_cli_validates_the_workspace(fork_server: ForkServer, tmp_path: Path) -> None:
    """`dagster definitions validate -w workspace.yaml`, as `make validate` and the UI use it:
    Dagster's command line, in a child of the fork server (Dagster and the code location
    imported once per test process, not again in a `dagster` subprocess)."""
    from hitl_gate.core.domain import PROJECT_ROOT

    output = tmp_path / "validate.out"
    child = fork_server.start(validate_workspace, str(PROJECT_ROOT), output=output)
    exitcode = child.join(120)
    if exitcode is None:
        child.kill()
    assert exitcode == 0, output.read_text()
    assert "All code locations passed validation" in output.read_text()

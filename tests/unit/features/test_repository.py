"""One feature repository for every domain: `feast plan` on a shared registry deletes nothing.

A real SQLite registry built for both shipped domains (each opened as its own run would, plus
a model-version service each), then Feast's own plan: through the Python API (structured diff)
and through the `feast` command line, as an operator would type it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from features.config import register_domain, registered_domain_files
from features.services import ModelVersionRef, ensure_model_service
from features.store import open_feature_store
from hitl_gate.core.domain import DomainConfig, load_domain

DOMAINS = [load_domain("consumer_credit"), load_domain("lending_club")]

pytestmark = [
    pytest.mark.slow,  # real Feast registries and one `feast` subprocess
    pytest.mark.filterwarnings("ignore:.*fetch_arrow_table:DeprecationWarning"),
]


def _ref(domain: DomainConfig) -> ModelVersionRef:
    inputs = tuple(domain.model.features[:2])
    return ModelVersionRef(domain.model.name, "1", "logistic_scorecard", "run-1", inputs)


@pytest.fixture(scope="module")
def feast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry both domains were applied to, one after the other, as two runs do."""
    root = tmp_path_factory.mktemp("feast")
    for domain in DOMAINS:
        store = open_feature_store(domain, root)
        ensure_model_service(store, domain, _ref(domain))
    return root


def _plan(feast_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Feast's plan of the repository in `feast_dir`, parsed as `feast plan` parses it."""
    from feast import FeatureStore, Project
    from feast.repo_operations import parse_repo

    # parse_repo imports `feature_repo` relative to the working directory, as the CLI does.
    monkeypatch.chdir(feast_dir)
    monkeypatch.syspath_prepend(str(feast_dir))
    monkeypatch.delitem(sys.modules, "feature_repo", raising=False)
    store = FeatureStore(repo_path=str(feast_dir))
    repo = parse_repo(feast_dir)
    # As `feast plan` does: a repository declaring no Project is the YAML's project.
    repo.projects.append(Project(name=store.config.project))
    registry_diff, _, _ = store.plan(repo)
    return registry_diff


def test_plan_on_a_shared_registry_proposes_no_change(
    feast_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.diff.property_diff import TransitionType

    diff = _plan(feast_dir, monkeypatch)
    moves = {
        (d.transition_type.name, d.feast_object_type.value, d.name)
        for d in diff.feast_object_diffs
        if d.transition_type != TransitionType.UNCHANGED
    }
    assert moves == set()
    unchanged = {d.name for d in diff.feast_object_diffs}
    for domain in DOMAINS:  # both domains' objects were compared, not just one
        assert {domain.features.view, domain.features.service, f"{domain.model.name}_v1"} <= (
            unchanged
        )


def test_plan_without_one_domain_would_delete_it(
    feast_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard is real: a repository missing a domain makes Feast propose deletions."""
    from feast.diff.property_diff import TransitionType

    copy = tmp_path / "feast"
    shutil.copytree(feast_dir, copy, ignore=shutil.ignore_patterns("sources"))
    (copy / "domains" / "lending_club.json").unlink()
    # The copied YAML points at the original registry: plan reads it, never writes.
    diffs = _plan(copy, monkeypatch).feast_object_diffs
    deleted = {d.name for d in diffs if d.transition_type == TransitionType.DELETE}
    assert {"lending_club_loan_features", "lending_club_scorecard_v1"} <= deleted


def test_feast_cli_plan_lists_no_deletion(feast_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`feast -c <dir> plan` as an operator types it: Feast's own command line (the `feast`
    script calls this `cli`), run by Click's runner in this process; a subprocess only paid
    Feast's import again (5 s of CPU)."""
    from click.testing import CliRunner
    from feast.cli.cli import cli

    # What the command changes in its process, undone after the test: plan moves into the
    # repository and imports `feature_repo` from there, as the CLI does.
    monkeypatch.chdir(feast_dir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "feature_repo", raising=False)
    monkeypatch.setenv("FEAST_USAGE", "False")
    monkeypatch.setenv("NO_COLOR", "1")
    done = CliRunner().invoke(cli, ["-c", str(feast_dir), "plan"])
    assert done.exit_code == 0, f"{done.output[-2000:]}{done.exception!r}"
    assert "No changes to registry" in done.output
    assert "Deleted" not in done.output


def test_a_domain_without_a_declaration_file_is_not_registered(tmp_path: Path) -> None:
    in_memory = DOMAINS[0].model_copy(update={"source_dir": Path(".")})
    assert register_domain(in_memory, tmp_path) is None
    assert registered_domain_files(tmp_path, in_memory.features.project) == []
    assert register_domain(DOMAINS[0], tmp_path) is not None
    assert registered_domain_files(tmp_path, "another_project") == []


def test_a_damaged_registration_is_named(tmp_path: Path) -> None:
    (tmp_path / "domains").mkdir()
    (tmp_path / "domains" / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"x\.json: not a domain registration"):
        registered_domain_files(tmp_path, "hitl_gate")

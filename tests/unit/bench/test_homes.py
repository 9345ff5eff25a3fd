"""`bench.homes`: a copied home runs as itself, not as the home it was copied from."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from bench.homes import copy_home, named_home, prepared_home, repoint_home
from hitl_gate.app.runner import ensure_dagster_home, open_instance
from hitl_gate.core.home import HitlPaths


def _built(home: Path) -> None:
    """The files a built home names itself in, as the code writes them (Dagster's) or in
    their shape (Feast's), and a witness beside it."""
    ensure_dagster_home(HitlPaths.at(home).dagster_home)
    (home / "feast").mkdir()
    (home / "feast" / "feature_store.yaml").write_text(
        f"registry:\n  path: sqlite:///{home}/feast/registry.db\n"
        f"online_store:\n  path: {home}/feast/online.db\n",
        encoding="utf-8",
    )
    witness = HitlPaths.at(home).witness_dir
    witness.mkdir()
    (witness / "checkpoints.jsonl").write_text("{}\n", encoding="utf-8")


def _base_dirs(home: Path) -> list[Path]:
    config = yaml.safe_load((home / "dagster" / "dagster.yaml").read_text(encoding="utf-8"))
    return [Path(v["config"]["base_dir"]) for v in config.values() if "config" in v]


def test_a_copy_names_itself_and_its_runs_stay_in_it(tmp_path: Path) -> None:
    """The copy's storages (Dagster's four, Feast's two) are in the copy; opening its Dagster
    instance creates the run storage there and nothing in the original; the witness came
    along. A plain copy (`cp -a`) named the original: that is what the test first pins."""
    source, target = tmp_path / "p1m.pristine", tmp_path / "p1m"
    source.mkdir()
    _built(source)
    plain = tmp_path / "plain"
    shutil.copytree(source, plain)
    assert named_home(plain) == source.resolve()

    copy_home(source, target)
    assert named_home(target) == target.resolve()
    dirs = _base_dirs(target)
    assert len(dirs) == 4 and all(d.is_relative_to(target.resolve()) for d in dirs)
    feast = (target / "feast" / "feature_store.yaml").read_text(encoding="utf-8")
    assert str(source) not in feast and feast.count(f"{target.resolve()}/feast/") == 2
    assert (HitlPaths.at(target).witness_dir / "checkpoints.jsonl").exists()
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    with open_instance(HitlPaths.at(target)) as instance:
        assert instance.get_runs() == []
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert (target / "dagster" / "history" / "runs.db").exists()


def test_repointing_is_idempotent_and_keeps_a_prefix_sibling(tmp_path: Path) -> None:
    """A home that names itself is left as it is; `/x/p1m` is replaced where it is a path,
    not inside `/x/p1m2` (a sibling whose name it begins)."""
    source = tmp_path / "p1m"
    source.mkdir()
    _built(source)
    feast = source / "feast" / "feature_store.yaml"
    feast.write_text(feast.read_text() + f"other: {tmp_path}/p1m2/x\n", encoding="utf-8")
    assert repoint_home(source) is False
    target = tmp_path / "copy"
    shutil.copytree(source, target)  # as `cp -a` leaves it
    assert prepared_home(target, None) == target
    assert repoint_home(target) is False
    text = (target / "feast" / "feature_store.yaml").read_text(encoding="utf-8")
    assert f"other: {tmp_path}/p1m2/x" in text
    assert f"{target.resolve()}/feast/online.db" in text

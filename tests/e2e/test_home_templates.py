"""The demo home a test gets is its own: self-contained, pristine, and never the snapshot.

The proofs behind tests/e2e/home_templates.py: every absolute path stored in the home points
into the home itself (so it reads and writes nothing else), a test starts from exactly the
snapshot whatever ran before it, and what it writes never reaches the snapshot and is gone for
the next test.
"""

from __future__ import annotations

from pathlib import Path

from hitl_gate.app.cli import main
from hitl_gate.core.home import HitlPaths
from tests.e2e.home_templates import HomeTemplate, restore, tree_digest
from tests.signed_acts_fixtures import demo_signing_key


def _occurrences(folder: Path, needle: bytes) -> dict[str, set[bytes]]:
    """For each file under `folder` holding `needle`: the 40 bytes that follow each occurrence."""
    found: dict[str, set[bytes]] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            at = data.find(needle)
            while at >= 0:
                tail = data[at + len(needle) : at + len(needle) + 40]
                found.setdefault(path.relative_to(folder).as_posix(), set()).add(tail)
                at = data.find(needle, at + 1)
    return found


# Bytes that never occur in UTF-8 text: where one follows a path, the path was cut there.
NOT_UTF8 = frozenset({0xC0, 0xC1, *range(0xF5, 0x100)})


def _names(own: bytes, tail: bytes) -> bool:
    """Whether the bytes after the run's folder name the home (`own`). SQLite splits a long
    value at a page boundary, DuckDB a long string over blocks (the cut followed by a block
    pointer, e.g. eight 0xFF bytes): a path cut short (at a control byte or a byte no UTF-8
    text holds) must at least begin `own`. Parquet's max statistic of a long text is cut at
    64 bytes with its last byte raised by one (still an upper bound), so a cut path may also
    end one above `own`'s byte there."""
    if tail.startswith(own):
        return True
    cut = next((i for i, b in enumerate(tail) if b < 0x20 or b in NOT_UTF8), len(tail))
    if cut == len(tail):
        return False
    head = tail[:cut]
    if own.startswith(head):
        return True
    raised_bound = 0 < cut <= len(own) and head[-1] == own[cut - 1] + 1
    return raised_bound and own.startswith(head[:-1])


def test_the_demo_home_refers_to_no_folder_but_its_own(
    demo_template: HomeTemplate, demo_home: HitlPaths
) -> None:
    base = demo_template.root.parent
    own = f"/{demo_template.root.name}/work/".encode()
    found = _occurrences(demo_home.home, str(base).encode())
    # The tools do store the home's own path (sealed audit rows, MLflow, Feast, GX, Dagster)...
    assert {"audit.duckdb", "mlflow/mlflow.db", "gx/great_expectations.yml"} <= found.keys()
    # ...and nothing else of the test run's folder: no snapshot, no other test's home.
    elsewhere = {name: tails for name, tails in found.items() if any(
        not _names(own, tail) for tail in tails)}  # fmt: skip
    assert not elsewhere, elsewhere
    assert not _occurrences(demo_home.home, str(demo_template.pristine).encode())


def test_a_test_starts_pristine_and_its_writes_never_reach_the_snapshot(
    demo_template: HomeTemplate, demo_home: HitlPaths
) -> None:
    recorded = demo_template.recorded_digests()
    assert tree_digest(demo_home.home.parent) == recorded, "the home was not restored"

    halt = demo_signing_key(demo_home.home, "demo-policy-owner")
    main(["--home", str(demo_home.home), "policy", "halt", *halt, "--reason", "test"])
    (demo_home.landing / "applications" / "2018-01-02" / "stray.csv").write_text("x\n")
    next(demo_home.review.glob("archive/*.xlsx")).unlink()
    changed = tree_digest(demo_home.home.parent)
    assert changed != recorded
    assert changed["home/audit.duckdb"] != recorded["home/audit.duckdb"] or (
        changed.get("home/audit.duckdb.wal") != recorded.get("home/audit.duckdb.wal")
    )
    assert tree_digest(demo_template.pristine) == recorded, "a write reached the snapshot"

    restore(demo_template.pristine, demo_template.work)  # what the next test's fixture does
    assert tree_digest(demo_home.home.parent) == recorded

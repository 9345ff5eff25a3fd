"""Per-run segments: two processes seal at once, verify covers both, tampering is named.

Each segment is a DuckDB file of its own, sealed by the ordinary seal into its own chain; the
fold signs a global checkpoint over the segments' checkpoints (`audit.run_segments`). Attacked
as the OS account of the home would: a segment truncated (tail, checkpoint and files), a
segment rewritten and re-signed with the real key, a segment file deleted, a leaf edited, a
global checkpoint re-signed with another key.
"""

from __future__ import annotations

import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.run_segments import Segments, fold_segments, seal_segment, verify_segments
from hitl_gate.core.database import audit_connection
from tests.fork_server import FORK_SERVER_GROUP, ForkedChild, ForkServer
from tests.unit.audit.seal_children import seal_own_segment
from tests.unit.audit.tamper_home import add_row


def _child(
    fork_server: ForkServer, root: Path, segment: str, key_file: Path, wait: bool
) -> tuple[ForkedChild, Path]:
    """A run sealing `segment` in a process of its own (`seal_children.seal_own_segment`), and
    the file its output goes to."""
    output = root.parent / f"{segment}.out"
    child = fork_server.start(
        seal_own_segment, str(root), segment, str(key_file), "wait" if wait else "-",
        output=output,
    )  # fmt: skip
    return child, output


def _folder(glob: Path, segments: Segments, ids: list[str]) -> AbstractContextManager[Any]:
    """The global writer as the fold needs it: it may attach the segments it folds."""
    return audit_connection(glob, attachable=[segments.database(s) for s in ids])


def _seeded(tmp_path: Path) -> tuple[Segments, Path]:
    """Two sealed segments (a: two checkpoints, b: one) folded twice into the global log."""
    segments = Segments(tmp_path / "segments")
    key_file = tmp_path / "secrets" / "audit.key"
    key = load_or_create_signing_key(key_file)
    glob = tmp_path / "audit.duckdb"
    for segment, rows in (("a", range(1, 4)), ("b", range(1, 3))):
        with segments.open(segment) as con:
            for i in rows:
                add_row(con, "reversal_requests", i, domain=segment, case_id=f"C{i}")
        seal_segment(segments, segment, f"run-{segment}", key)
    with _folder(glob, segments, ["a", "b"]) as con:
        fold_segments(con, segments, ["a", "b"], key)
    with segments.open("a") as con:
        add_row(con, "reversal_requests", 9, domain="a", case_id="C9")
    seal_segment(segments, "a", "run-a2", key)
    with _folder(glob, segments, ["a", "b"]) as con:
        folded = fold_segments(con, segments, ["a", "b", "a"], key)  # a named twice: one leaf
        assert folded is not None and folded["leaves"] == 3
        assert fold_segments(con, segments, ["a", "b"], key) is None  # nothing new
    return segments, key_file


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`_seeded` built once; each test gets a copy (`seeded`)."""
    root = tmp_path_factory.mktemp("seeded")
    _seeded(root)
    return root


@pytest.fixture
def seeded(seeded_template: Path, tmp_path: Path) -> tuple[Segments, Path]:
    """A copy of the seeded folder in the test's own: its segments and key file."""
    shutil.copytree(seeded_template, tmp_path, dirs_exist_ok=True)
    return Segments(tmp_path / "segments"), tmp_path / "secrets" / "audit.key"


def _verify(tmp_path: Path, segments: Segments, key_file: Path) -> list[str]:
    pinned = public_key_hex(load_or_create_signing_key(key_file))
    with audit_connection(tmp_path / "audit.duckdb", read_only=True) as con:
        return verify_segments(con, segments, pinned).problems


@pytest.mark.slow  # two sealing processes: `make test`, not test-fast
@pytest.mark.xdist_group(FORK_SERVER_GROUP)  # forked from that worker's forkserver
def test_two_processes_seal_their_segments_at_once_and_verify_covers_both(
    tmp_path: Path, fork_server: ForkServer
) -> None:
    segments = Segments(tmp_path / "segments")
    segments.root.mkdir(parents=True)
    key_file = tmp_path / "secrets" / "audit.key"
    key = load_or_create_signing_key(key_file)
    first, first_out = _child(fork_server, segments.root, "consumer_credit-2018-01-05",
                              key_file, wait=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (segments.root / "consumer_credit-2018-01-05.ready").exists():
            assert first.is_alive() and time.monotonic() < deadline, first_out.read_text()
            time.sleep(0.05)
        # The first run holds its segment open for writing; the second seals its own meanwhile.
        second, second_out = _child(fork_server, segments.root, "consumer_credit-2018-01-06",
                                    key_file, wait=False)  # fmt: skip
        assert second.join(180) == 0, second_out.read_text()
        assert first.is_alive(), "the first run was still holding its segment"
        (segments.root / "go").touch()
        assert first.join(180) == 0, first_out.read_text()
    finally:
        first.kill()
    ids = ["consumer_credit-2018-01-05", "consumer_credit-2018-01-06"]
    with _folder(tmp_path / "audit.duckdb", segments, ids) as con:
        checkpoint = fold_segments(con, segments, ids, key)
    assert checkpoint is not None and checkpoint["leaves"] == 2
    pinned = public_key_hex(key)
    with audit_connection(tmp_path / "audit.duckdb", read_only=True) as con:
        report = verify_segments(con, segments, pinned)
    assert report.ok, report.problems
    assert (report.segments, report.leaves, report.global_checkpoints) == (2, 2, 1)


def test_untouched_segments_verify(tmp_path: Path, seeded: tuple[Segments, Path]) -> None:
    segments, key_file = seeded
    assert _verify(tmp_path, segments, key_file) == []


def _truncate(segments: Segments, key_file: Path) -> None:
    """Segment a's last run removed whole: its entries, checkpoint row and file, and caches."""
    with segments.open("a") as con:
        (last,) = con.execute("SELECT max(last_seq) FROM audit_checkpoints").fetchone()
        (before,) = con.execute(
            "SELECT max(last_seq) FROM audit_checkpoints WHERE last_seq < ?", [last]
        ).fetchone()
        for table in ("audit_log", "audit_log_index"):
            column = "seq" if table == "audit_log" else "seq"
            con.execute(f"DELETE FROM {table} WHERE {column} > ?", [before])
        con.execute("DELETE FROM audit_checkpoints WHERE last_seq > ?", [before])
        con.execute("DELETE FROM reversal_requests WHERE case_id = 'C9'")
        con.execute("DELETE FROM audit_seen_rows")
    for path in segments.checkpoints("a").glob(f"checkpoint-{last:012d}.json"):
        path.unlink()


def _rewrite(segments: Segments, key_file: Path) -> None:
    """Segment a's history rewritten (a row changed) and re-signed with the real key."""
    with segments.open("a") as con:
        con.execute("UPDATE reversal_requests SET requested_by = 'mallory' WHERE case_id = 'C1'")
        for table in ("audit_log", "audit_log_index", "audit_seen_rows", "audit_checkpoints",
                      "audit_runs"):  # fmt: skip
            con.execute(f"DELETE FROM {table}")
    for path in segments.checkpoints("a").glob("*.json"):
        path.unlink()
    seal_segment(segments, "a", "rewritten", load_or_create_signing_key(key_file))


def _delete_file(segments: Segments, key_file: Path) -> None:
    segments.database("b").unlink()


def _edit_leaf(tmp_path: Path) -> None:
    with audit_connection(tmp_path / "audit.duckdb") as con:
        con.execute("UPDATE audit_segment_leaves SET last_seq = 2 WHERE leaf_seq = 3")


def _resign_global(tmp_path: Path) -> None:
    from hitl_gate.audit.run_segments import global_message

    forger = load_or_create_signing_key(tmp_path / "elsewhere" / "forger.key")
    with audit_connection(tmp_path / "audit.duckdb") as con:
        rows = con.execute("SELECT * FROM audit_global_checkpoints").fetchall()
        names = [d[0] for d in con.description]
        for row in rows:
            record = dict(zip(names, row, strict=True))
            signature = forger.sign(global_message(record)).hex()
            con.execute("UPDATE audit_global_checkpoints SET signature = ? WHERE global_seq = ?",
                        [signature, record["global_seq"]])  # fmt: skip


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        ("truncate", "segment a: leaf 3 (checkpoint at seq 4"),
        ("rewrite", "segment a: leaf 1 (checkpoint at seq 3"),
        ("delete", "segment b: its file is missing"),
        ("leaf", "leaf 3 (segment a): edited or out of order"),
        ("resign", "global checkpoint 1: not signed by the pinned key"),
    ],
)
def test_tampering_with_a_segment_or_the_global_log_is_named(
    tmp_path: Path, seeded: tuple[Segments, Path], attack: str, expected: str
) -> None:
    segments, key_file = seeded
    if attack == "truncate":
        _truncate(segments, key_file)
    elif attack == "rewrite":
        _rewrite(segments, key_file)
    elif attack == "delete":
        _delete_file(segments, key_file)
    elif attack == "leaf":
        _edit_leaf(tmp_path)
    else:
        _resign_global(tmp_path)
    problems = _verify(tmp_path, segments, key_file)
    assert any(expected in p for p in problems), problems

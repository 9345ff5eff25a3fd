"""The pick's writer may attach its run's segment file and nothing else, attacked as the database
writer would: with the allowance `seal_with_segment` opens its writer with (the warehouse
readable, the segment's file attachable), SQL on that session still cannot read the signing key
or anything else under `secrets/`, reach out of the segments folder through `..`, read, attach
or write any other file of the segments folder, or widen its own allowance; a segment file (or
its write-ahead log) planted as a symbolic link to the key is refused before the session opens,
and a segments folder that is itself a link into `secrets/` still exposes no key.

The fold's writer (`seal_and_fold`) and verify's reader (`hitl audit verify`) attach the
segments they read, read-only: the same attacks fail there, neither can write a segment, the
fold cannot attach a segment its session was not opened for (and folds nothing then), and
verify's session is allowed only the folded segments' files, never a linked one (named).

Each attack is first shown to work on an unrestricted session (`_leaks`), so a test that passes
proves the restriction, not a broken query.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hitl_gate.audit.events import CHAIN_EVENTS, load_chain_events
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.run_seal import (
    load_segment_events,
    pick_rows,
    readable_segments,
    reading_session,
)
from hitl_gate.audit.run_segments import (
    Segments,
    attached_segment,
    file_problem,
    fold_segments,
    seal_segment,
    verify_segments,
)
from hitl_gate.core.database import attach_database, attached_files, audit_connection
from hitl_gate.core.home import HitlPaths
from tests.unit.audit.tamper_home import add_row

SECRET = "BEGIN-hitl-secret-key-material"


@pytest.fixture
def paths(tmp_path: Path) -> HitlPaths:
    """A home with the signing key and a token file under `secrets/`, a warehouse, and two
    segment files (the run's own and another run's)."""
    paths = HitlPaths.at(tmp_path / "home")
    paths.secrets_dir.mkdir(parents=True)
    paths.audit_key_file.write_text(SECRET)
    (paths.secrets_dir / "softhsm").mkdir()
    (paths.secrets_dir / "softhsm" / "token.object").write_text(SECRET)
    paths.warehouse.mkdir()
    paths.segments_dir.mkdir(parents=True)
    for name in ("mine", "other"):
        with duckdb.connect(str(paths.segments_dir / f"{name}.duckdb")) as seg:
            seg.execute(f"CREATE TABLE t AS SELECT '{name}' AS v")
    return paths


def _pick_session(paths: HitlPaths, segment: str = "mine") -> Callable[[], object]:
    """The writer as `seal_with_segment` opens it (the pipeline's readable warehouse too)."""
    return lambda: audit_connection(
        paths.audit_db,
        readable=[paths.warehouse],
        attachable=[paths.segments_dir / f"{segment}.duckdb"],
    )


def _fold_session(paths: HitlPaths, *segments: str) -> Callable[[], object]:
    """The writer as `seal_and_fold` opens it: the segments it folds attachable."""
    return lambda: audit_connection(
        paths.audit_db,
        readable=[paths.warehouse],
        attachable=[paths.segments_dir / f"{segment}.duckdb" for segment in segments],
    )


def _escapes(paths: HitlPaths) -> list[str]:
    """Reads of the key and the token, directly, by pattern and out of the segments folder."""
    key, token = paths.audit_key_file, paths.secrets_dir / "softhsm" / "token.object"
    segments = paths.segments_dir
    return [
        f"SELECT content FROM read_blob('{key}')",
        f"SELECT content FROM read_blob('{token}')",
        f"SELECT content FROM read_blob('{paths.secrets_dir}/*')",
        f"SELECT content FROM read_blob('{paths.secrets_dir}/**')",
        # Out of the segments folder through `..`.
        f"SELECT content FROM read_blob('{segments}/../../secrets/{key.name}')",
        f"SELECT content FROM read_text('{segments}/./../segments/../../secrets/{key.name}')",
    ]


def _sealed(paths: HitlPaths, tmp_path: Path, *names: str) -> tuple[Segments, Ed25519PrivateKey]:
    """Segments `names`, each holding one sealed row, and the key that signed them (kept
    outside the home)."""
    segments = Segments(paths.segments_dir)
    key = load_or_create_signing_key(tmp_path / "keys" / "audit.key")
    for name in names:
        with segments.open(name) as con:
            add_row(con, "reversal_requests", 1, domain=name, case_id="C1")
        seal_segment(segments, name, f"run-{name}", key, memory_limit=None)
    return segments, key


def _leaks(sql: str) -> None:
    """Control: the same query on an unrestricted session returns the secret."""
    assert SECRET in str(duckdb.connect().sql(sql).fetchall())


def _refused(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        con.execute(sql).fetchall()


def test_the_pick_session_reads_no_secret_and_nothing_outside_its_segment(
    paths: HitlPaths,
) -> None:
    key, segments = paths.audit_key_file, paths.segments_dir
    escapes = _escapes(paths)
    for sql in escapes:
        _leaks(sql)
    with _pick_session(paths)() as con:
        attach_database(con, segments / "mine.duckdb", "audit_segment")  # what it is for
        con.execute("INSERT INTO audit_segment.t VALUES ('picked')")
        assert con.execute("SELECT count(*) FROM audit_segment.t").fetchall() == [(2,)]
        for sql in escapes:
            _refused(con, sql)
        # Nothing else of the segments folder: read, attach or write.
        _refused(con, f"SELECT content FROM read_blob('{segments}/other.duckdb')")
        _refused(con, f"SELECT content FROM read_blob('{segments}/*')")
        _refused(con, f"ATTACH '{segments}/other.duckdb' AS other")
        _refused(con, f"ATTACH '{segments}/new.duckdb' AS new")
        _refused(con, f"ATTACH '{paths.secrets_dir}/planted.duckdb' AS planted")
        _refused(con, f"COPY (SELECT 1) TO '{segments}/planted.csv'")
        _refused(con, f"COPY (SELECT 1) TO '{paths.secrets_dir}/planted.csv'")
        # The allowance cannot be widened or switched off from SQL.
        for sql in (
            "SET enable_external_access = true",
            f"SET allowed_directories = ['{paths.home}/']",
            f"SET allowed_paths = ['{key}']",
        ):
            with pytest.raises(duckdb.Error, match="external access|Cannot change"):
                con.execute(sql)
        _refused(con, f"SELECT content FROM read_blob('{key}')")
    assert not (segments / "planted.csv").exists()
    assert not (paths.secrets_dir / "planted.csv").exists()


def test_a_session_without_the_allowance_attaches_no_segment(paths: HitlPaths) -> None:
    """The allowance is per connection: the pipeline's other writers cannot attach one, and a
    pick on such a connection stops with the reason, leaving no segment file behind."""
    with audit_connection(paths.audit_db, readable=[paths.warehouse]) as con:
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            attach_database(con, paths.segments_dir / "mine.duckdb", "audit_segment")
        _refused(con, f"SELECT content FROM read_blob('{paths.audit_key_file}')")
        segments = Segments(paths.segments_dir)
        with pytest.raises(RuntimeError, match="may not attach the segment's file"):
            pick_rows(con, segments, "new-run")
    assert not segments.database("new-run").exists()


@pytest.mark.parametrize("planted", ["mine.duckdb", "mine.duckdb.wal", "mine.duckdb.wal.recovery"])
def test_a_segment_file_planted_as_a_link_to_the_key_is_refused(
    paths: HitlPaths, planted: str
) -> None:
    """The home's OS account replaces the segment (or a DuckDB file beside it) by a symbolic
    link to the key: the allowance would name the key's bytes, so no session is opened."""
    link = paths.segments_dir / planted
    link.unlink(missing_ok=True)
    link.symlink_to(paths.audit_key_file)
    _leaks(f"SELECT content FROM read_blob('{link}')")
    with pytest.raises(ValueError, match="symbolic link"):
        attached_files(paths.segments_dir / "mine.duckdb")
    for session in (_pick_session(paths), _fold_session(paths, "mine")):
        with pytest.raises(ValueError, match="symbolic link"), session():
            pass
    problem = file_problem(Segments(paths.segments_dir), "mine")
    assert problem is not None and "symbolic link" in problem  # verify never allows it


def test_a_segments_folder_linked_into_the_secrets_exposes_no_key(paths: HitlPaths) -> None:
    """The segments folder replaced by a link to `secrets/`: the allowance names the
    segment's own file names there (resolved), never the key's or the token's."""
    moved = paths.segments_dir.with_name("segments.real")
    paths.segments_dir.rename(moved)
    paths.segments_dir.symlink_to(paths.secrets_dir, target_is_directory=True)
    escapes = [
        f"SELECT content FROM read_blob('{paths.segments_dir}/{paths.audit_key_file.name}')",
        f"SELECT content FROM read_blob('{paths.secrets_dir}/{paths.audit_key_file.name}')",
        f"SELECT content FROM read_blob('{paths.segments_dir}/softhsm/token.object')",
    ]
    for sql in escapes:
        _leaks(sql)
    with _pick_session(paths)() as con:
        for sql in escapes:
            _refused(con, sql)


def test_the_fold_session_reads_its_segments_only_and_writes_none(paths: HitlPaths) -> None:
    segments = paths.segments_dir
    escapes = _escapes(paths)
    with _fold_session(paths, "mine")() as con:
        with attached_segment(con, Segments(segments), "mine", "folded") as alias:
            assert con.execute(f"SELECT v FROM {alias}.t").fetchall() == [("mine",)]
            with pytest.raises(duckdb.Error, match="read-only"):
                con.execute(f"INSERT INTO {alias}.t VALUES ('forged')")
            with pytest.raises(duckdb.Error, match="read-only"):
                con.execute(f"DELETE FROM {alias}.t")
            for sql in escapes:
                _refused(con, sql)
            _refused(con, f"SELECT content FROM read_blob('{segments}/other.duckdb')")
            _refused(con, f"ATTACH '{segments}/other.duckdb' AS other (READ_ONLY)")
            _refused(con, f"ATTACH '{paths.audit_key_file}' AS planted (READ_ONLY)")
            _refused(con, f"COPY (SELECT 1) TO '{segments}/planted.csv'")
        with pytest.raises(duckdb.Error, match="folded"):  # detached after the block
            con.execute("SELECT * FROM folded.t")
    with duckdb.connect(str(segments / "mine.duckdb"), read_only=True) as seg:
        assert seg.execute("SELECT v FROM t").fetchall() == [("mine",)]
    assert not (segments / "planted.csv").exists()


def test_the_fold_attaches_no_segment_its_session_was_not_opened_for(
    paths: HitlPaths, tmp_path: Path
) -> None:
    """Asked to fold a segment its session may not attach, the fold stops before anything is
    folded (no leaf, no global checkpoint), saying why; a fold copies no entry."""
    segments, key = _sealed(paths, tmp_path, "run-a", "run-b")
    with _fold_session(paths, "run-a")() as con:
        with pytest.raises(RuntimeError, match="segment run-b: this audit connection may not"):
            fold_segments(con, segments, ["run-a", "run-b"], key)
        for table in ("audit_segment_leaves", "audit_segment_log", "audit_global_checkpoints"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]
        checkpoint = fold_segments(con, segments, ["run-a"], key)
        assert checkpoint is not None and checkpoint["leaves"] == 1
        assert con.execute("SELECT segment_id FROM audit_segment_leaves").fetchall() == [("run-a",)]
        assert con.execute("SELECT count(*) FROM audit_segment_log").fetchall() == [(0,)]
        attached = con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal")
        assert attached.fetchall() == [("audit",)]  # every segment detached again


def _folded_a_and_b_then_b_linked_to_the_key(
    paths: HitlPaths, tmp_path: Path
) -> tuple[Segments, Ed25519PrivateKey, Path]:
    """Segments run-a, run-b and run-c sealed, a and b folded, then b's file replaced by a
    symbolic link to the audit key (what an insider plants to have a reader open the key)."""
    segments, key = _sealed(paths, tmp_path, "run-a", "run-b", "run-c")
    with _fold_session(paths, "run-a", "run-b")() as con:
        assert fold_segments(con, segments, ["run-a", "run-b"], key) is not None
    linked = segments.database("run-b")
    linked.unlink()
    linked.symlink_to(paths.audit_key_file)
    return segments, key, linked


def test_verify_session_may_attach_only_the_folded_segments_never_a_link(
    paths: HitlPaths, tmp_path: Path
) -> None:
    """Verify's session is allowed the files of the folded segments (read from the database
    before it opens): a segment not folded, a link planted in place of a folded one, the key
    and the rest of the home stay out of reach; the link is named, not followed."""
    segments, key, linked = _folded_a_and_b_then_b_linked_to_the_key(paths, tmp_path)
    with audit_connection(paths.audit_db, read_only=True) as con:
        allowed = readable_segments(con, segments)
    assert allowed == [segments.database("run-a")]
    with audit_connection(paths.audit_db, read_only=True, attachable=allowed) as con:
        load_chain_events(con)
        assert load_segment_events(con, segments) > 0  # run-a's entries; run-b skipped
        (loaded,) = con.execute(f"SELECT count(*) FROM {CHAIN_EVENTS}").fetchall()[0]
        assert loaded > 0
        for sql in _escapes(paths):
            _refused(con, sql)
        _refused(con, f"SELECT content FROM read_blob('{linked}')")
        _refused(con, f"ATTACH '{segments.database('run-c')}' AS c (READ_ONLY)")
        _refused(con, f"ATTACH '{linked}' AS b (READ_ONLY)")
        problems = verify_segments(con, segments, public_key_hex(key)).problems
    assert any("segment run-b" in p and "symbolic link" in p for p in problems), problems


def test_a_reading_session_reads_the_folded_segments_in_place_and_nothing_else(
    paths: HitlPaths, tmp_path: Path
) -> None:
    """The auditors' views in a reading session (trace, bundle) list the folded segments'
    entries read in place: the session is allowed those files only, attached read-only; a
    segment not folded, a link planted in place of a folded one, the key and the rest of the
    home stay out of reach, and the link is left out, not followed."""
    segments, key, linked = _folded_a_and_b_then_b_linked_to_the_key(paths, tmp_path)
    with reading_session(paths.audit_db, segments) as con:
        listed = con.execute(
            "SELECT DISTINCT segment_id FROM audit_events WHERE segment_id IS NOT NULL"
        ).fetchall()
        assert listed == [("run-a",)]
        for sql in _escapes(paths):
            _refused(con, sql)
        _refused(con, f"SELECT content FROM read_blob('{linked}')")
        _refused(con, f"ATTACH '{segments.database('run-c')}' AS c (READ_ONLY)")
        _refused(con, f"ATTACH '{linked}' AS b (READ_ONLY)")
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM read_segment_0.main.audit_log")

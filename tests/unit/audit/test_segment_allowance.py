"""The pick's writer may attach its run's segment file and nothing else, attacked as the database
writer would: with the allowance `seal_with_segment` opens its writer with (the warehouse
readable, the segment's file attachable), SQL on that session still cannot read the signing key
or anything else under `secrets/`, reach out of the segments folder through `..`, read, attach
or write any other file of the segments folder, or widen its own allowance; a segment file (or
its write-ahead log) planted as a symbolic link to the key is refused before the session opens,
and a segments folder that is itself a link into `secrets/` still exposes no key.

Each attack is first shown to work on an unrestricted session (`_leaks`), so a test that passes
proves the restriction, not a broken query.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from hitl_gate.audit.run_seal import pick_rows
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.database import attach_database, attached_files, audit_connection
from hitl_gate.core.home import HitlPaths

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


def _leaks(sql: str) -> None:
    """Control: the same query on an unrestricted session returns the secret."""
    assert SECRET in str(duckdb.connect().sql(sql).fetchall())


def _refused(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        con.execute(sql).fetchall()


def test_the_pick_session_reads_no_secret_and_nothing_outside_its_segment(
    paths: HitlPaths,
) -> None:
    key, token = paths.audit_key_file, paths.secrets_dir / "softhsm" / "token.object"
    segments = paths.segments_dir
    escapes = [
        f"SELECT content FROM read_blob('{key}')",
        f"SELECT content FROM read_blob('{token}')",
        f"SELECT content FROM read_blob('{paths.secrets_dir}/*')",
        f"SELECT content FROM read_blob('{paths.secrets_dir}/**')",
        # Out of the segments folder through `..`.
        f"SELECT content FROM read_blob('{segments}/../../secrets/{key.name}')",
        f"SELECT content FROM read_text('{segments}/./../segments/../../secrets/{key.name}')",
    ]
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
    with pytest.raises(ValueError, match="symbolic link"), _pick_session(paths)():
        pass


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

"""The seal of a segment's rows without fingerprints (`seal_run(..., fresh=True)`): it logs the
same events as the ordinary seal, remembers no fingerprint and writes no index row, never logs
a digest twice when it meets rows it already logged (a retried run's segment: read from the
log's own envelopes), logs an entity's changed content as its next version, still refuses an
insert-once row edited after it was logged, and with several slices splits the work without
losing or repeating a row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from hitl_gate.audit.events import SOURCES_BY_TYPE
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import SealRefused, seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection
from tests.unit.audit.tamper_home import add_row

DECISIONS = (SOURCES_BY_TYPE["decision"], SOURCES_BY_TYPE["partition_accounted"])


def _write(con: duckdb.DuckDBPyConnection, cases: range) -> None:
    for i in cases:
        add_row(con, "decisions", i, domain="d", case_id=f"C{i:04d}", partition_date="2026-01-02")
    add_row(con, "partition_accounting", 1, domain="d", partition_date="2026-01-02")


def _logged(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(event type, entity key, content digest) of every entry, read from the chain itself."""
    return con.execute(
        "SELECT e[1], e[2], e[3] FROM (SELECT json_extract_string(substr(entry, 66), "
        "['$.type', '$.key', '$.digest']) AS e FROM audit_log) ORDER BY ALL"
    ).fetchall()


def _index_rows(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT count(*) FROM audit_log_index").fetchall()[0][0])


@pytest.mark.parametrize("batch_rows", [1_000_000, 7])
def test_a_fresh_seal_logs_what_the_ordinary_seal_logs_and_remembers_nothing(
    tmp_path: Path, batch_rows: int
) -> None:
    key = load_or_create_signing_key(tmp_path / "key")
    logged = {}
    for fresh in (False, True):
        with audit_connection(tmp_path / f"{fresh}.duckdb") as con:
            _write(con, range(30))
            result = seal_run(
                con, "run-1", key, tmp_path / f"cp-{fresh}", DECISIONS, batch_rows,
                memory_limit=None, fresh=fresh,
            )  # fmt: skip
            assert (result.appended, result.canonicalised) == (31, 31)
            logged[fresh] = _logged(con)
            seen = con.execute("SELECT count(*) FROM audit_seen_rows").fetchall()[0][0]
            assert seen == (0 if fresh else 31)
            # a segment's index is read by nobody: a fresh seal does not write it
            assert _index_rows(con) == (0 if fresh else 31)
            report = verify_audit(con, tmp_path / f"cp-{fresh}", public_key_hex(key))
            assert report.ok, report.problems
    assert logged[True] == logged[False] and len(logged[True]) == 31


def test_a_fresh_seal_logs_no_digest_twice_and_a_change_as_the_next_version(
    tmp_path: Path,
) -> None:
    """A retried run's segment still holds rows its first seal logged: the envelopes of the
    segment's own log keep them out (it has no index rows); a row whose content changed is
    logged as its entity's next version."""
    key, checkpoints = load_or_create_signing_key(tmp_path / "key"), tmp_path / "cp"
    with audit_connection(tmp_path / "seg.duckdb") as con:
        _write(con, range(10))
        first = seal_run(con, "run-1", key, checkpoints, DECISIONS, memory_limit=None, fresh=True)
        assert first.appended == 11
        again = seal_run(con, "run-1", key, checkpoints, DECISIONS, memory_limit=None, fresh=True)
        assert (again.appended, again.checkpoint) == (0, None)
        con.execute("UPDATE decisions SET score = score + 1 WHERE case_id = 'C0003'")
        changed = seal_run(con, "run-1", key, checkpoints, DECISIONS, memory_limit=None, fresh=True)
        assert changed.appended == 1
        versions = [row for row in _logged(con) if row[1] == "d/C0003"]
        assert len(versions) == 2 and versions[0][2] != versions[1][2]
        assert len(_logged(con)) == 12 and _index_rows(con) == 0
        report = verify_audit(con, checkpoints, public_key_hex(key))
        assert report.ok, report.problems


@pytest.mark.parametrize("batch_rows", [1_000_000, 2])
def test_a_fresh_seal_still_refuses_an_insert_once_row_edited_after_it_was_logged(
    tmp_path: Path, batch_rows: int
) -> None:
    """With no index rows, the clash check of a fresh seal reads the digests its log held
    before it began: an edited insert-once row is refused, not logged as a second digest."""
    key, checkpoints = load_or_create_signing_key(tmp_path / "key"), tmp_path / "cp"
    requests = (SOURCES_BY_TYPE["reversal_requested"],)
    with audit_connection(tmp_path / "seg.duckdb") as con:
        for i in range(1, 5):
            add_row(con, "reversal_requests", i, domain="d", case_id=f"C{i}")
        sealed = seal_run(
            con, "run-1", key, checkpoints, requests, batch_rows, memory_limit=None, fresh=True
        )
        assert sealed.appended == 4 and _index_rows(con) == 0
        con.execute("UPDATE reversal_requests SET requested_by = 'mallory' WHERE case_id = 'C2'")
        with pytest.raises(SealRefused) as refused:
            seal_run(
                con, "run-2", key, checkpoints, requests, batch_rows, memory_limit=None,
                fresh=True,
            )  # fmt: skip
        assert [c.entity_key for c in refused.value.clashes] == ["d/C2"]
        assert refused.value.result.appended == 0 and len(_logged(con)) == 4

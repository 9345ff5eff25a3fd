"""The seal in slices: any slice size logs the same events, and a seal killed between slices
is finished by the next one, with `verify` green throughout (real DuckDB, real signatures)."""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.audit import seal as seal_module
from hitl_gate.audit.chain import MerkleBuilder, merkle_root_of_packed
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import insert_new_rows, schema_statements

CASES = 40


def _day(con: duckdb.DuckDBPyConnection) -> None:
    """Executions, their adverse actions and the day's accounting: three sources."""
    ids = [f"C{i:05d}" for i in range(CASES)]
    now = datetime(2018, 1, 2, 12, tzinfo=UTC)
    common = {"domain": ["d"] * CASES, "case_id": ids, "partition_date": [date(2018, 1, 2)] * CASES}
    insert_new_rows(
        con,
        "executions",
        pl.DataFrame(
            {
                **common,
                "action": ["approve" if i % 3 else "decline" for i in range(CASES)],
                "decided_by": ["policy"] * CASES,
                "route": ["auto_approve"] * CASES,
                "reason_codes": [[f"R{i % 4}"] for i in range(CASES)],
                "run_id": ["r"] * CASES,
                "executed_at": [now] * CASES,
            }
        ),
    )
    insert_new_rows(
        con,
        "adverse_actions",
        pl.DataFrame(
            {
                **common,
                "decided_by": ["policy"] * CASES,
                "reason_codes": [["R1"]] * CASES,
                "reasons": [["too risky"]] * CASES,
                "run_id": ["r"] * CASES,
                "issued_at": [now] * CASES,
            }
        ),
    )


def _logged(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str, str]]:
    return set(
        con.execute("SELECT event_type, entity_key, content_digest FROM audit_log_index").fetchall()
    )


def _sealed_day(tmp_path: Path, batch_rows: int) -> set[tuple[str, str, str]]:
    con = duckdb.connect()
    con.execute(schema_statements())
    _day(con)
    key = load_or_create_signing_key(tmp_path / "k")
    result = seal_run(con, "r1", key, tmp_path / f"cp-{batch_rows}", batch_rows=batch_rows)
    assert result.appended == 2 * CASES and result.canonicalised == 2 * CASES
    report = verify_audit(con, tmp_path / f"cp-{batch_rows}", public_key_hex(key))
    assert report.ok and not report.notes, report.summary()
    return _logged(con)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str, str]]:
    """The day sealed in one slice: what every slice size must log (the day is fixed, so
    sealed once for the module's cases)."""
    return _sealed_day(tmp_path_factory.mktemp("whole"), 10**9)


@pytest.mark.parametrize("batch_rows", [1, 7, 1_000_000])
def test_any_slice_size_logs_the_same_events(tmp_path, batch_rows, whole) -> None:
    """Slices of one row, of seven, or one slice per table: the same (event, entity, digest)."""
    assert _sealed_day(tmp_path, batch_rows) == whole


def test_a_seal_killed_between_slices_is_finished_by_the_next(tmp_path, monkeypatch) -> None:
    """Killed in its fourth slice's transaction: three slices stay committed (unsigned, and
    `verify` says so), the fourth rolls back, and the next seal logs the rest and signs all."""
    key = load_or_create_signing_key(tmp_path / "k")
    out = tmp_path / "cp"
    con = duckdb.connect()
    con.execute(schema_statements())
    _day(con)
    remember = seal_module.remember
    calls = []

    def die_in_fourth_slice(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return remember(*args, **kwargs)

    monkeypatch.setattr(seal_module, "remember", die_in_fourth_slice)
    with pytest.raises(KeyboardInterrupt):
        seal_run(con, "r1", key, out, batch_rows=10)  # 4 slices per source
    committed = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert 0 < committed < 2 * CASES
    report = verify_audit(con, out, public_key_hex(key), lineage=False)
    assert report.ok and report.entries == committed, report.summary()
    assert any("not covered" in note for note in report.notes), report.notes

    monkeypatch.setattr(seal_module, "remember", remember)
    result = seal_run(con, "r2", key, out, batch_rows=10)
    assert result.appended == 2 * CASES - committed
    assert (result.checkpoint["first_seq"], result.checkpoint["last_seq"]) == (1, 2 * CASES)
    report = verify_audit(con, out, public_key_hex(key))
    assert report.ok and report.entries == 2 * CASES and not report.notes, report.summary()
    assert _logged(con) == _sealed_day(tmp_path / "whole", 10**9)
    assert seal_run(con, "r3", key, out).appended == 0


@pytest.mark.parametrize("fanout", [2, 3, 16])
def test_merkle_builder_matches_the_batch_tree(fanout) -> None:
    """Leaves added in arbitrary pieces give the root of the whole packed list."""
    rng = random.Random(fanout)
    for count in [*range(0, 40), 255, 256, 257, 4097]:
        packed = os.urandom(32 * count)
        builder = MerkleBuilder(fanout)
        done = 0
        while done < count:
            step = rng.randint(1, 20)
            builder.add(packed[32 * done : 32 * (done + step)])
            done += step
        assert builder.leaves == count
        assert builder.root() == merkle_root_of_packed(packed, fanout), count


def test_the_seal_bounds_duckdb_memory_and_restores_it(tmp_path) -> None:
    """The limit holds while sealing (seen from inside), and the caller's setting comes back."""
    con = duckdb.connect()
    con.execute(schema_statements())
    _day(con)
    con.execute("SET memory_limit = '3GiB'")
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    seen = []
    remember = seal_module.remember

    def look(con_, *args):
        seen.append(con_.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return remember(con_, *args)

    key = load_or_create_signing_key(tmp_path / "k")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seal_module, "remember", look)
        seal_run(con, "r1", key, tmp_path / "cp", memory_limit="512MB")
    assert seen and set(seen) == {"488.2 MiB"}  # DuckDB reports 512 MB in MiB
    assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == before
    with pytest.raises(ValueError, match="memory size"):
        seal_run(con, "r2", key, tmp_path / "cp", memory_limit="1GB'; DROP TABLE audit_log; --")

"""The audit chain: sealing is idempotent, and any tampering is caught by `verify_audit`."""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import seal_run
from hitl_gate.audit.store import audit_connection, insert_new_rows, schema_statements
from hitl_gate.audit.verify import verify_audit


def _executions(start: int, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "domain": ["consumer_credit"] * count,
            "case_id": [f"C{i:05d}" for i in range(start, start + count)],
            "partition_date": [date(2018, 1, 2)] * count,
            "action": ["approve" if i % 3 else "decline" for i in range(count)],
            "decided_by": ["policy"] * count,
            "route": ["auto_approve"] * count,
            "reason_codes": [["R01", "R02"]] * count,
            "run_id": ["r"] * count,
            "executed_at": [
                datetime(2018, 1, 2, 12, 0, i % 60, 97, tzinfo=UTC) for i in range(count)
            ],
        }
    )


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, dict]:
    """An audit database with three sealed runs and their checkpoint files."""
    home = tmp_path_factory.mktemp("chain")
    key = load_or_create_signing_key(home / "secrets" / "audit.key")
    db, checkpoints = home / "audit.duckdb", home / "checkpoints"
    with audit_connection(db) as con:
        for run, (start, count) in enumerate([(0, 7), (7, 5), (12, 9)]):
            insert_new_rows(con, "executions", _executions(start, count))
            seal_run(con, f"run-{run}", key, checkpoints)
        tables = {
            t: con.sql(f"SELECT * FROM {t}").to_arrow_table()
            for t in ("audit_log", "audit_log_index", "audit_checkpoints", "executions")
        }
    return db, checkpoints, public_key_hex(key), tables


def _copy(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory database holding the sealed tables, ready to be mutated."""
    con = duckdb.connect()
    con.execute(schema_statements())
    for name, table in tables.items():
        con.register("src", table)
        con.execute(f"INSERT INTO {name} SELECT * FROM src")
        con.unregister("src")
    return con


def test_sealed_chain_verifies_and_reseal_appends_nothing(sealed, tmp_path) -> None:
    db, checkpoints, public_key, tables = sealed
    assert tables["audit_log"].num_rows == 21
    assert len(list(checkpoints.glob("*.json"))) == 3
    with audit_connection(db, read_only=True) as con:
        report = verify_audit(con, checkpoints, public_key)
    assert report.ok, report.summary()
    assert (report.entries, report.checkpoints) == (21, 3)
    con = _copy(tables)
    key = load_or_create_signing_key(tmp_path / "k")
    out = tmp_path / "cp"
    assert seal_run(con, "again", key, out).appended == 0


def test_key_file_is_private_and_stable(tmp_path) -> None:
    key_file = tmp_path / "secrets" / "k"
    first = public_key_hex(load_or_create_signing_key(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert public_key_hex(load_or_create_signing_key(key_file)) == first


def test_edited_lineage_row_is_reported(sealed) -> None:
    _, checkpoints, public_key, tables = sealed
    con = _copy(tables)
    con.execute("UPDATE executions SET action = 'approve' WHERE case_id = 'C00003'")
    report = verify_audit(con, checkpoints, public_key)
    assert not report.ok
    assert "C00003" in report.summary()


def test_wrong_public_key_is_reported(sealed, tmp_path) -> None:
    _, checkpoints, _, tables = sealed
    other = public_key_hex(load_or_create_signing_key(tmp_path / "other"))
    assert not verify_audit(_copy(tables), checkpoints, other).ok


MUTATIONS = st.one_of(
    st.tuples(st.just("field"), st.integers(1, 21), st.sampled_from(["entry", "entry_hash"]),
              st.integers(0, 10_000)),
    st.tuples(st.just("seq"), st.integers(1, 21), st.integers(22, 500)),
    st.tuples(st.just("delete"), st.integers(1, 21)),
    st.tuples(st.just("swap"), st.integers(1, 21), st.integers(1, 21)),
    st.tuples(st.just("truncate"), st.integers(0, 20)),
    st.tuples(st.just("checkpoint"), st.integers(0, 2),
              st.sampled_from(["head_hash", "merkle_root", "first_seq", "run_id", "created_at"])),
)  # fmt: skip


def _mutate(con: duckdb.DuckDBPyConnection, mutation: tuple) -> bool:
    """Apply one tampering; False when it turned out to be a no-op (then nothing to detect)."""
    kind = mutation[0]
    if kind == "field":
        _, seq, column, where = mutation
        (value,) = con.execute(f"SELECT {column} FROM audit_log WHERE seq = ?", [seq]).fetchone()
        pos = where % len(value)
        changed = value[:pos] + ("x" if value[pos] != "x" else "y") + value[pos + 1 :]
        con.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", [changed, seq])
    elif kind == "seq":
        con.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", [mutation[2], mutation[1]])
    elif kind == "delete":
        con.execute("DELETE FROM audit_log WHERE seq = ?", [mutation[1]])
    elif kind == "swap":
        a, b = mutation[1], mutation[2]
        if a == b:
            return False
        con.execute(
            "UPDATE audit_log SET entry = o.entry, entry_hash = o.entry_hash FROM "
            "(SELECT seq, entry, entry_hash FROM audit_log WHERE seq IN (?, ?)) o "
            "WHERE audit_log.seq IN (?, ?) AND o.seq <> audit_log.seq",
            [a, b, a, b],
        )
    elif kind == "truncate":  # a careful attacker drops the tail and its database checkpoints
        keep = mutation[1]
        con.execute("DELETE FROM audit_log WHERE seq > ?", [keep])
        con.execute("DELETE FROM audit_checkpoints WHERE last_seq > ?", [keep])
    elif kind == "checkpoint":
        _, index, column = mutation
        rows = con.execute("SELECT last_seq FROM audit_checkpoints ORDER BY last_seq").fetchall()
        target = rows[index][0]
        value = "7" if column == "first_seq" else "tampered"
        con.execute(
            f"UPDATE audit_checkpoints SET {column} = ? WHERE last_seq = ?", [value, target]
        )
    return True


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutation=MUTATIONS)
def test_any_tampering_is_detected(sealed, mutation) -> None:
    _, checkpoints, public_key, tables = sealed
    con = _copy(tables)
    if not _mutate(con, mutation):
        return
    report = verify_audit(con, checkpoints, public_key, lineage=False)
    assert not report.ok, f"{mutation} went undetected"

"""The audit chain: sealing is idempotent, and any tampering is caught by `verify_audit`."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl_gate.audit.chain import GENESIS_HASH
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import SealRefused, seal_run
from hitl_gate.audit.segments import scan_segment
from hitl_gate.audit.verify import verify_audit
from hitl_gate.core.database import audit_connection, insert_new_rows, schema_statements


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
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str, dict]]:
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
    sealed = SealedTables(tables, home / "copies")
    yield db, checkpoints, public_key_hex(key), sealed
    if sealed.scratch is not None:
        sealed.scratch.close()


class SealedTables(dict[str, pa.Table]):
    """The sealed tables by name, and a folder for the databases `_copy` makes of them."""

    def __init__(self, tables: dict[str, pa.Table], folder: Path) -> None:
        super().__init__(tables)
        self.folder = folder
        self.copies = 0
        self.scratch: duckdb.DuckDBPyConnection | None = None  # `_undone`'s copy, kept open


def _copy(tables: SealedTables) -> duckdb.DuckDBPyConnection:
    """A fresh database holding only the sealed tables, ready to be mutated.

    The first one is made with the schema and the tables' rows; every later one is a copy of
    its file (the schema costs about 0.1 s to run, the copy a millisecond: the property test
    makes one per example).
    """
    template = tables.folder / "template.duckdb"
    if not template.exists():
        tables.folder.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(template)) as con:
            con.execute(schema_statements())
            for name, table in tables.items():
                con.register("src", table)
                con.execute(f"INSERT INTO {name} SELECT * FROM src")
                con.unregister("src")
    tables.copies += 1
    copy = tables.folder / f"copy-{tables.copies}.duckdb"
    shutil.copyfile(template, copy)
    return duckdb.connect(str(copy))


@contextmanager
def _undone(tables: SealedTables) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the sealed tables whose changes inside the block are rolled back after it.

    One database (one copy, one DuckDB instance, about 15 ms of CPU) for all the examples of
    the property test instead of one each: the block runs in a transaction, so `verify_audit`
    (one connection, no transaction of its own) reads the mutated rows, and the next example
    starts from the sealed tables again.
    """
    if tables.scratch is None:
        tables.scratch = _copy(tables)
    con = tables.scratch
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")


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


def test_deleted_row_of_an_append_only_table_is_reported(sealed) -> None:
    """The log keeps digests, not rows: a deleted execution is found by its logged key."""
    _, checkpoints, public_key, tables = sealed
    con = _copy(tables)
    assert verify_audit(con, checkpoints, public_key).ok
    con.execute("DELETE FROM executions WHERE case_id = 'C00008'")
    report = verify_audit(con, checkpoints, public_key)
    assert not report.ok
    assert "executions consumer_credit/C00008: insert-once record logged at entry seq" in (
        report.summary()
    )
    assert "deleted" in report.summary()


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
              st.sampled_from(["head_hash", "merkle_root", "first_seq", "run_id", "created_at",
                               "merkle_fanout"])),
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
        value = {"first_seq": "7", "merkle_fanout": "2"}.get(column, "tampered")
        con.execute(
            f"UPDATE audit_checkpoints SET {column} = ? WHERE last_seq = ?", [value, target]
        )
    return True


@pytest.mark.slow
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutation=MUTATIONS)
def test_any_tampering_is_detected(sealed, mutation) -> None:
    _, checkpoints, public_key, tables = sealed
    with _undone(tables) as con:
        assert verify_audit(con, checkpoints, public_key, lineage=False).ok  # rolled back
        if not _mutate(con, mutation):
            return
        report = verify_audit(con, checkpoints, public_key, lineage=False)
    assert not report.ok, f"{mutation} went undetected"


def test_checkpoints_signed_with_the_binary_tree_still_verify(tmp_path) -> None:
    """A log sealed before `merkle_fanout` existed (binary tree, field not signed) verifies,
    and its fan-out cannot be raised without breaking the signature."""
    from hitl_gate.audit.chain import merkle_root
    from hitl_gate.audit.seal import checkpoint_message, export_checkpoints

    key = load_or_create_signing_key(tmp_path / "k")
    con = duckdb.connect()
    con.execute(schema_statements())
    insert_new_rows(con, "executions", _executions(0, 11))
    seal_run(con, "r", key, tmp_path / "unused")
    hashes = [h for (h,) in con.execute("SELECT entry_hash FROM audit_log ORDER BY seq").fetchall()]
    old = {
        "first_seq": 1, "last_seq": 11, "head_hash": hashes[-1],
        "merkle_root": merkle_root(hashes, fanout=2), "run_id": "r",
        "created_at": "2018-01-02T00:00:00.000000Z", "public_key": public_key_hex(key),
    }  # fmt: skip
    assert merkle_root(hashes, fanout=2) != merkle_root(hashes)  # the two trees differ
    old["signature"] = key.sign(checkpoint_message(old)).hex()
    con.execute("DELETE FROM audit_checkpoints")
    con.execute("INSERT INTO audit_checkpoints BY NAME SELECT * FROM (SELECT " + ", ".join(
        f"? AS {name}" for name in old) + ")", list(old.values()))  # fmt: skip
    folder = tmp_path / "old"
    export_checkpoints(con, folder)
    assert '"merkle_fanout": 2' in next(folder.iterdir()).read_text()  # the column's default
    report = verify_audit(con, folder, public_key_hex(key))
    assert report.ok, report.summary()
    con.execute("UPDATE audit_checkpoints SET merkle_fanout = 16")
    report = verify_audit(con, tmp_path / "none", public_key_hex(key))
    assert "bad signature" in report.summary()


def _accounting(executed: int, run_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "domain": ["consumer_credit"],
            "partition_date": [date(2018, 1, 2)],
            "rows_read": [10],
            "rows_quarantined": [0],
            "executed": [executed],
            "pending_review": [10 - executed],
            "balanced": [True],
            "run_id": [run_id],
            "recorded_at": [datetime.now(UTC)],
        }
    )


def test_seal_canonicalises_only_rows_new_since_the_last_seal(tmp_path) -> None:
    key = load_or_create_signing_key(tmp_path / "k")
    out = tmp_path / "cp"
    with audit_connection(tmp_path / "a.duckdb") as con:
        insert_new_rows(con, "executions", _executions(0, 7))
        insert_new_rows(con, "partition_accounting", _accounting(7, "run-a"))
        first = seal_run(con, "a", key, out, batch_rows=3)  # several slices per table
        assert (first.canonicalised, first.appended) == (8, 8)
        again = seal_run(con, "b", key, out)
        assert (again.canonicalised, again.appended, again.checkpoint) == (0, 0, None)

        insert_new_rows(con, "executions", _executions(7, 5))
        # an identical re-run of the day rewrites its accounting with a new run id and time
        con.execute("DELETE FROM partition_accounting")
        insert_new_rows(con, "partition_accounting", _accounting(7, "run-c"))
        third = seal_run(con, "c", key, out)
        assert (third.canonicalised, third.appended) == (5, 5)
        assert third.checkpoint is not None and third.checkpoint["first_seq"] == 9

        # a real change to a versioned entity is a new event for it, once
        con.execute("UPDATE partition_accounting SET executed = 8, run_id = 'run-d'")
        fourth = seal_run(con, "d", key, out)
        assert (fourth.canonicalised, fourth.appended) == (1, 1)
        # an insert-once record edited after sealing is refused, never logged, every time
        con.execute("UPDATE executions SET reason_codes = NULL WHERE case_id = 'C00001'")
        for run in ("e", "f"):
            with pytest.raises(SealRefused, match="executions consumer_credit/C00001") as refused:
                seal_run(con, run, key, out)
            assert "hitl audit seal" not in str(refused.value)
            assert refused.value.result.appended == 0
        con.execute("UPDATE executions SET reason_codes = ['R01', 'R02'] WHERE case_id = 'C00001'")
        assert seal_run(con, "g", key, out).appended == 0
        report = verify_audit(con, out, public_key_hex(key))
        assert report.ok, report.summary()
        assert report.entries == 14
        keys = con.execute(
            "SELECT event_type, entity_key FROM audit_log_index ORDER BY seq"
        ).fetchall()
    # source order, then each table's storage order
    assert sorted(keys[:7]) == [("execution", f"consumer_credit/C{i:05d}") for i in range(7)]
    assert keys[7] == ("partition_accounted", "consumer_credit/2018-01-02")
    assert keys[-1:] == [("partition_accounted", "consumer_credit/2018-01-02")]


def test_losing_the_fingerprint_cache_appends_nothing(sealed, tmp_path) -> None:
    con = _copy(sealed[3])  # every sealed table but `audit_seen_rows`
    result = seal_run(con, "again", load_or_create_signing_key(tmp_path / "k"), tmp_path / "cp")
    assert (result.canonicalised, result.appended) == (21, 0)


def test_identical_rows_across_slices_are_logged_once(tmp_path) -> None:
    row = pl.DataFrame(
        {
            "domain": ["d"],
            "partition_date": [date(2018, 1, 2)],
            "file_path": ["f.csv"],
            "file_sha256": ["ab"],
            "row_number": [3],
            "check_name": ["not_null"],
            "message": ["missing"],
            "run_id": ["r"],
        }
    )
    key = load_or_create_signing_key(tmp_path / "k")
    with audit_connection(tmp_path / "a.duckdb") as con:
        for _ in range(5):  # quarantine has no key: the same failure recorded five times
            con.register("r", row.to_arrow())
            con.execute("INSERT INTO quarantine BY NAME SELECT * FROM r")
            con.unregister("r")
        result = seal_run(con, "a", key, tmp_path / "cp", batch_rows=2)
        assert result.appended == 1
        assert verify_audit(con, tmp_path / "cp", public_key_hex(key)).ok


def test_entries_are_canonical_json_with_the_documented_envelope(sealed) -> None:
    import hashlib
    import json

    con = _copy(sealed[3])
    seq, entry = con.execute(
        "SELECT seq, entry FROM audit_log JOIN audit_log_index USING (seq) "
        "WHERE entity_key = 'consumer_credit/C00001'"
    ).fetchone()
    prev, body = entry.split("|", 1)
    envelope = json.loads(body)
    assert list(envelope) == ["at", "digest", "key", "run_id", "type"]
    assert envelope["type"] == "execution" and envelope["key"] == "consumer_credit/C00001"
    assert "2018-01-02T12:00:01.000097Z" not in entry  # the row stays in its table
    stable = con.execute(
        "SELECT to_json(struct_pack(domain, case_id, partition_date := partition_date::VARCHAR,"
        " action, decided_by, reviewer_id, route, policy_version, model_version, reason_codes,"
        " run_id, executed_at := strftime(timezone('UTC', executed_at),"
        " '%Y-%m-%dT%H:%M:%S.%fZ')))::VARCHAR FROM executions WHERE case_id = 'C00001'"
    ).fetchone()[0]
    assert envelope["digest"] == hashlib.sha256(stable.encode()).hexdigest()
    # The entry before it, or the genesis hash when the case's entry happens to come first
    # (rows of one slice are sealed in no guaranteed order).
    before = con.execute("SELECT entry_hash FROM audit_log WHERE seq = ?", [seq - 1]).fetchone()
    assert prev == (before[0] if before else GENESIS_HASH)


def test_sql_sha256_function_matches_duckdb() -> None:
    from hitl_gate.audit.chain import sha256_function

    con = duckdb.connect()
    with sha256_function(con) as name:
        rows = con.execute(
            f"SELECT {name}(s) = sha256(s) FROM (VALUES (''), ('a'), ('é|ü'), "
            "(repeat('x', 100000))) t(s)"
        ).fetchall()
    assert rows == [(True,)] * 4


PARALLEL_MUTATIONS = [
    ("field", 15, "entry", 70),  # altered entry in the second segment
    ("field", 12, "entry_hash", 3),  # the stored hash the second segment starts from
    ("field", 12, "entry", 90),  # the last entry of the first segment
    ("field", 13, "entry", 5),  # the link at the join
    ("delete", 13),
    ("swap", 11, 14),  # across the cut
    ("seq", 21, 40),
    ("truncate", 12),
    ("checkpoint", 2, "merkle_root"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mutation", [None, *PARALLEL_MUTATIONS], ids=str)
def test_parallel_verify_detects_what_one_pass_detects(sealed, tmp_path, monkeypatch, mutation):
    """The log split at a checkpoint (seq 12) and checked by two processes."""
    import hitl_gate.audit.verify as verify

    monkeypatch.setattr(verify, "PARALLEL_MIN_ENTRIES", 1)
    in_process = []
    monkeypatch.setattr(
        verify, "scan_segment", lambda *a, **k: in_process.append(k) or scan_segment(*a, **k)
    )
    with _copy(sealed[3]) as con:
        db = Path(con.execute("SELECT path FROM duckdb_databases() WHERE database_name = "
                              "current_database()").fetchall()[0][0])  # fmt: skip
        if mutation is not None:
            _mutate(con, mutation)
    with audit_connection(db, read_only=True) as con:
        ranges = con.execute("SELECT first_seq, last_seq FROM audit_checkpoints").fetchall()
        plan = verify._segment_plan(con, [{"first_seq": a, "last_seq": b} for a, b in ranges], 2)
        report = verify_audit(con, sealed[1], sealed[2], lineage=False, workers=2)
    if mutation is None:
        assert plan is not None and [s.lo for s in plan[1]] == [1, 13]
        assert [(k["lo"], k["hi"]) for k in in_process] == [(1, 12)]  # 13..21 in the child
        assert report.ok and report.entries == 21, report.summary()
    else:
        assert not report.ok, f"{mutation} went undetected"


@pytest.mark.parametrize(
    "stored",
    [lambda h: h[:40], lambda h: h + "00", lambda h: h.upper(), lambda h: ""],
    ids=["short", "long", "upper", "empty"],
)
def test_malformed_stored_hash_is_reported_at_its_entry(sealed, stored) -> None:
    """Hashes are compared as hex text rows: a value of the wrong length or case is a change."""
    _, checkpoints, public_key, tables = sealed
    con = _copy(tables)
    (value,) = con.execute("SELECT entry_hash FROM audit_log WHERE seq = 9").fetchone()
    con.execute("UPDATE audit_log SET entry_hash = ? WHERE seq = 9", [stored(value)])
    report = verify_audit(con, checkpoints, public_key, lineage=False)
    assert report.first_broken is not None and report.first_broken.seq == 9, report.summary()


def test_a_seal_killed_between_tables_is_signed_by_the_next(tmp_path, monkeypatch) -> None:
    """Committed per table: a seal that dies after the first table leaves its entries unsigned
    (`verify` notes them); the next seal's checkpoint starts at them and covers them."""
    from hitl_gate.audit import seal as seal_module

    key = load_or_create_signing_key(tmp_path / "k")
    out = tmp_path / "cp"
    con = duckdb.connect()
    con.execute(schema_statements())
    insert_new_rows(con, "executions", _executions(0, 4))
    seal_run(con, "r1", key, out)
    insert_new_rows(con, "executions", _executions(4, 3))
    insert_new_rows(con, "partition_accounting", _accounting(7, "r2"))
    find_unseen = seal_module.SourceSlices.find_unseen

    def die_at_accounting(self):  # the table after executions: theirs is committed by then
        if self.source.table == "partition_accounting":
            raise KeyboardInterrupt("killed")
        return find_unseen(self)

    monkeypatch.setattr(seal_module.SourceSlices, "find_unseen", die_at_accounting)
    with pytest.raises(KeyboardInterrupt):
        seal_run(con, "r2", key, out)
    report = verify_audit(con, out, public_key_hex(key), lineage=False)
    assert report.ok and report.entries == 7
    assert any("entries 5..7 are not covered" in note for note in report.notes), report.notes
    monkeypatch.setattr(seal_module.SourceSlices, "find_unseen", find_unseen)
    result = seal_run(con, "r3", key, out)
    assert result.appended == 1  # the accounting row; the executions were kept
    assert (result.checkpoint["first_seq"], result.checkpoint["last_seq"]) == (5, 8)
    report = verify_audit(con, out, public_key_hex(key))
    assert report.ok and report.entries == 8 and not report.notes, report.summary()

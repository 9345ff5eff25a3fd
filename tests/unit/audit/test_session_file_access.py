"""Every DuckDB session that does not need files is shut out of them, attacked as the database
writer would: a view or query that `read_blob`s the home's secrets is refused in verify's child
processes, Great Expectations' warehouse sessions and Feast's retrieval session, while each
session still reads what its job needs.

Each attack is first shown to work on an unrestricted session (`_leaks`), so a test that
passes proves the restriction, not a broken query.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from sqlalchemy import create_engine

from hitl_gate.quality import expectation_batches
from hitl_gate.quality.gx_dialect import register

SECRET = "BEGIN-hitl-secret-key-material"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with a secret under `secrets/` and a warehouse holding one Parquet file."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "audit.key").write_text(SECRET)
    stage = tmp_path / "warehouse" / "demo" / "validated"
    stage.mkdir(parents=True)
    pl.DataFrame({"partition_date": [date(2026, 1, 2)], "x": [1]}).write_parquet(
        stage / "2026-01-02.parquet"
    )
    return tmp_path


def _steal(home: Path) -> str:
    return f"SELECT content FROM read_blob('{home / 'secrets' / 'audit.key'}')"


def _leaks(home: Path) -> None:
    """Control: the same query on an unrestricted session reads the secret."""
    assert SECRET in str(duckdb.connect().sql(_steal(home)).fetchall())


@pytest.mark.slow  # a real child process
def test_a_verify_child_cannot_read_the_secrets_through_a_planted_view(home: Path) -> None:
    """The writer replaces `audit_log` by a view over the key file; the child refuses it."""
    _leaks(home)
    database = home / "audit.duckdb"
    with duckdb.connect(str(database)) as con:  # the insider's own, unrestricted session
        con.execute(
            "CREATE VIEW audit_log AS SELECT 1::BIGINT AS seq, repeat('0', 64) AS entry_hash, "
            f"content::VARCHAR AS entry FROM read_blob('{home / 'secrets' / 'audit.key'}')"
        )
    job = home / "job.json"
    job.write_text(json.dumps({"database": str(database), "checkpoints": [], "batch_rows": 10,
                               "lo": 1, "hi": 1, "prev_hex": "0" * 64}))  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-m", "hitl_gate.audit.segments", str(job)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert child.returncode != 0 and SECRET not in child.stdout + child.stderr
    assert "Permission Error" in child.stderr and "disabled by configuration" in child.stderr


def test_great_expectations_sessions_read_the_warehouse_only(home: Path) -> None:
    _leaks(home)
    warehouse = home / "warehouse"
    views = expectation_batches.prepare_stage(warehouse, "demo", "validated", [], None)
    with expectation_batches._connect(warehouse) as con:  # the views' own session
        with pytest.raises(duckdb.PermissionException):
            con.sql(_steal(home)).fetchall()
        assert con.sql("SELECT count(*) FROM demo__validated").fetchall() == [(1,)]
        con.execute(f"CREATE OR REPLACE VIEW planted AS SELECT 1 FROM {views.checked}")
    database = expectation_batches.database_path(warehouse)
    engine = create_engine(
        f"{register()}:///{database}", **expectation_batches.engine_kwargs(warehouse)
    )
    try:
        with engine.connect() as ge:  # Great Expectations' engine, as gx_suites builds it
            assert ge.exec_driver_sql("SELECT count(*) FROM demo__validated").fetchall() == [(1,)]
            with pytest.raises(Exception, match="disabled by configuration"):
                ge.exec_driver_sql(_steal(home)).fetchall()
            with pytest.raises(Exception, match="disabled by configuration"):
                ge.exec_driver_sql("SELECT * FROM read_blob('demo/../../secrets/audit.key')")
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="allowed_directories"):  # no unrestricted engine
        create_engine(f"{register()}:///{database}").connect()


@pytest.mark.slow  # Feast's import (with ibis and fastapi) costs ~4 CPU s: not for test-fast
def test_feasts_retrieval_session_reads_the_sources_folders_only(home: Path) -> None:
    # Imported here: Feast costs seconds to import, paid by the worker running this test only.
    from features.asof_store import AsofRetrievalJob, source_directories

    _leaks(home)
    source = str(home / "warehouse" / "demo" / "validated" / "*.parquet")
    readable = source_directories([source])
    assert readable[-1].endswith("/warehouse/demo/validated/")

    def job(sql: str, params: list[object]) -> AsofRetrievalJob:
        return AsofRetrievalJob(pa.table({"k": [1]}), sql, params, [], False, None,  # type: ignore[arg-type]
                                lambda: None, readable)  # type: ignore[arg-type,return-value]  # fmt: skip

    assert job("SELECT x FROM read_parquet(?)", [source]).to_arrow().num_rows == 1
    with pytest.raises(duckdb.PermissionException):
        job(_steal(home), []).to_arrow()
    with pytest.raises(duckdb.PermissionException):
        job("SELECT * FROM read_parquet(?)", [str(home / "secrets" / "*")]).to_arrow()

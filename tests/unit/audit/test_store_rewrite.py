"""Rewriting the stores: what was deleted or redacted leaves the files' bytes, nothing else does.

Real DuckDB and SQLite files in a temporary home, read back byte by byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hitl_gate.audit.store_rewrite import (
    SCRUBBED,
    compact_duckdb,
    database_files,
    rewrite_stores,
    vacuum_sqlite,
)
from hitl_gate.core.database import audit_connection
from hitl_gate.ingest.report import quarantine_sample

SECRET = "87654.321-INCOME"


def _duckdb_with_dead_rows(path: Path) -> None:
    with audit_connection(path) as con:
        con.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, value VARCHAR); "
            "INSERT INTO notes SELECT i, ? || i FROM range(2000) r(i)",
            [SECRET],
        )
        con.execute("CHECKPOINT")
        con.execute("UPDATE notes SET value = '[removed]'")
        con.execute("CHECKPOINT")


def test_a_redacted_duckdb_value_stays_in_the_bytes_until_the_file_is_rewritten(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.duckdb"
    _duckdb_with_dead_rows(db)
    assert SECRET.encode() in db.read_bytes()  # the UPDATE alone does not remove it
    compact_duckdb(db)
    assert SECRET.encode() not in db.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.duckdb"]  # no leftovers
    with audit_connection(db) as con:  # same content, same constraints, schema intact
        assert con.execute("SELECT count(*), min(value) FROM notes").fetchall() == [
            (2000, "[removed]")
        ]
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO notes VALUES (1, 'again')")
        assert con.execute("SELECT count(*) FROM audit_log").fetchall() == [(0,)]


@pytest.mark.slow
def test_a_locked_database_is_not_rewritten_under_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    _duckdb_with_dead_rows(db)
    before = db.read_bytes()
    import subprocess
    import sys

    holder = subprocess.Popen(  # another process holds the write lock
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(db)!r}); "
         "print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException, match="lock"):
            compact_duckdb(db)
    finally:
        holder.kill()
        holder.wait()
    assert db.read_bytes() == before


def _entry(label: str, data: dict) -> dict:
    return {"__class__": "EventMetadataEntry", "description": None, "entry_data": data,
            "label": label}  # fmt: skip


def _dagster_like_sqlite(path: Path) -> None:
    """An event as Dagster 1.13 stores it (metadata as `EventMetadataEntry` objects)."""
    sample = {"__class__": "MarkdownMetadataEntryData", "md_str": f"| value |\n| {SECRET} |"}
    masked = {
        "__class__": "MarkdownMetadataEntryData",
        "md_str": "| case_id | check |\n| C1 | min |",
    }
    event = {
        "__class__": "EventLogEntry",
        "dagster_event": {
            "event_specific_data": {
                "materialization": {
                    "metadata_entries": [
                        _entry("rows_read", {"__class__": "IntMetadataEntryData", "value": 7}),
                        _entry("quarantine_sample", sample),
                    ]
                },
                "later": {
                    "metadata_entries": [_entry("quarantine_sample", masked)]  # kept as it is
                },
                "mapping": {"quarantine_sample": {"md_str": SECRET}},  # the newer form
            }
        },
    }
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE event_logs (id INTEGER PRIMARY KEY, event TEXT, note TEXT)")
    con.execute("INSERT INTO event_logs VALUES (1, ?, 'quarantine_sample: not json')",
                [json.dumps(event)])  # fmt: skip
    con.execute("INSERT INTO event_logs SELECT NULL, 'filler ' || ?, '' FROM "
                "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                "SELECT i FROM n)", [SECRET])  # fmt: skip
    con.execute("DELETE FROM event_logs WHERE event LIKE 'filler %'")  # free pages keep them
    con.commit()
    con.close()


def test_dagster_metadata_is_scrubbed_and_free_pages_vacuumed(tmp_path: Path) -> None:
    db = tmp_path / "dagster" / "history" / "runs.db"
    db.parent.mkdir(parents=True)
    _dagster_like_sqlite(db)
    assert SECRET.encode() in db.read_bytes()
    assert vacuum_sqlite(db) == 2
    assert SECRET.encode() not in db.read_bytes()
    con = sqlite3.connect(db)
    (text,) = con.execute("SELECT event FROM event_logs").fetchone()
    con.close()
    data = json.loads(text)["dagster_event"]["event_specific_data"]
    rows, sample = data["materialization"]["metadata_entries"]
    assert sample["entry_data"] == {"__class__": "MarkdownMetadataEntryData", "md_str": SCRUBBED}
    assert rows["entry_data"]["value"] == 7  # the rest is untouched
    assert data["mapping"]["quarantine_sample"]["md_str"] == SCRUBBED
    (kept,) = data["later"]["metadata_entries"]
    assert kept["entry_data"]["md_str"].startswith("| case_id | check |")
    assert vacuum_sqlite(db) == 0  # idempotent


def test_every_store_under_the_home_is_found_and_rewritten(tmp_path: Path) -> None:
    _duckdb_with_dead_rows(tmp_path / "audit.duckdb")
    (tmp_path / "dagster").mkdir()
    _dagster_like_sqlite(tmp_path / "dagster" / "runs.db")
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "x.parquet")
    (tmp_path / "notes.txt").write_text("plain")
    found = {p.name: kind for p, kind in database_files(tmp_path)}
    assert found == {"audit.duckdb": "duckdb", "runs.db": "sqlite"}
    rewritten = rewrite_stores(tmp_path)
    assert [r.kind for r in rewritten] == ["duckdb", "sqlite"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_quarantine_sample_in_dagster_metadata_never_holds_the_value() -> None:
    quarantine = pl.DataFrame(
        {
            "file_path": ["in/2018-01-02/a.csv"],
            "row_number": [3],
            "case_id": ["C1"],
            "column": ["annual_income"],
            "check": ["min"],
            "value": [SECRET],
            "message": [f"'{SECRET}' is below the declared minimum"],
        }
    )
    sample = quarantine_sample(quarantine)
    assert "value" not in sample.columns and "message" not in sample.columns
    assert SECRET not in str(sample.rows())

"""A new MLflow store is written from the blank store (`models.mlflow_store.blank_store`): it
must be the store MLflow makes itself on an empty folder (same tables, indexes, migration stamp,
rows), with the default experiment added by MLflow for that folder and working directory."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hitl_gate.core.new_database import place_new_database
from models.mlflow_store import DATABASE_FILE, blank_store, configure, tracking_uri

pytestmark = pytest.mark.slow  # MLflow's migrations on a new file, twice

# The default experiment's columns that depend on when it was made (compared apart).
TIME_COLUMNS = ("creation_time", "last_update_time")
FILE_PRAGMAS = ("page_size", "journal_mode", "user_version", "application_id", "auto_vacuum")


def contents(database: Path) -> dict[str, object]:
    """Everything a store holds but the default experiment's times: the file's settings, every
    schema object with its SQL, every table's rows."""
    con = sqlite3.connect(database)
    try:
        found: dict[str, object] = {
            pragma: con.execute(f"PRAGMA {pragma}").fetchall() for pragma in FILE_PRAGMAS
        }
        found["schema"] = sorted(
            (kind, name, table, constraints_in_order(sql))
            for kind, name, table, sql in con.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
            )
        )
        tables = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = con.execute(f'SELECT * FROM "{table}"')
            columns = [c[0] for c in cursor.description]
            kept = [i for i, c in enumerate(columns) if c not in TIME_COLUMNS]
            found[table] = sorted((tuple(row[i] for i in kept) for row in cursor), key=repr)
        return found
    finally:
        con.close()


def constraints_in_order(sql: str | None) -> str | None:
    """A `CREATE TABLE` statement with its table constraints sorted, its columns as they are.

    MLflow's own migrations rebuild the `runs` table with its CHECK constraints in the order of
    a Python set, which differs from one creation to the next: two stores MLflow made itself in
    one process were seen to differ in that order alone (2026-12-07). Columns keep their order
    (it is what `SELECT *` returns); every constraint must still be there, word for word.
    """
    if sql is None or not sql.startswith("CREATE TABLE"):
        return sql
    head, _, body = sql.partition("(")
    body = body[: body.rindex(")")]
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    parts.append(body[start:].strip())
    keywords = ("CONSTRAINT", "CHECK", "PRIMARY KEY", "UNIQUE", "FOREIGN KEY")
    constraints = sorted(p for p in parts if p.startswith(keywords))
    columns = [p for p in parts if not p.startswith(keywords)]
    return f"{head}({', '.join([*columns, *constraints])})"


def experiment_times(database: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(database)
    try:
        return con.execute(f"SELECT {', '.join(TIME_COLUMNS)} FROM experiments").fetchall()
    finally:
        con.close()


def test_a_store_from_the_blank_is_the_store_mlflow_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow takes the default experiment's artefacts folder from it
    own, copied = tmp_path / "own", tmp_path / "copied"
    own.mkdir()
    uri = tracking_uri(own)
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)

    calls = blank_store.cache_info()
    started = int(time.time() * 1000)
    configure(copied)
    after = blank_store.cache_info()
    assert after.hits + after.misses == calls.hits + calls.misses + 1  # written from the blank

    mlflow_made, from_blank = contents(own / DATABASE_FILE), contents(copied / DATABASE_FILE)
    assert from_blank == mlflow_made
    default = (0, "Default", f"{tmp_path}/mlruns/0", "active", "default")
    assert from_blank["experiments"] == [default]
    assert from_blank["alembic_version"]  # the migration stamp, the same as MLflow's own
    # The default experiment was made when the copy was opened, not copied from the blank.
    assert all(t >= started for t in experiment_times(copied / DATABASE_FILE)[0])


def test_the_blank_holds_nothing_of_a_place_or_time(tmp_path: Path) -> None:
    """No experiment (its artefact location names a folder, its times a moment): MLflow adds the
    default one where the copy is opened. And a database is never written over."""
    blank = tmp_path / DATABASE_FILE
    assert place_new_database(blank, blank_store())
    assert contents(blank)["experiments"] == []
    assert not place_new_database(blank, b"")  # it exists: left as it is
    assert blank.read_bytes() == blank_store()

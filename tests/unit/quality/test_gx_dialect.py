"""GE's DuckDB dialect answers the primary-key question from DuckDB's own catalogue."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from hitl_gate.quality.gx_dialect import register


def test_primary_keys_come_from_duckdbs_catalogue(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"{register()}:///{tmp_path / 'file.duckdb'}",
        connect_args={"allowed_directories": [f"{tmp_path}/"]},
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE keyed (a INTEGER, b INTEGER, PRIMARY KEY (b, a))"
            )
            connection.exec_driver_sql("CREATE TABLE plain (a INTEGER)")
            connection.exec_driver_sql("CREATE VIEW seen AS SELECT * FROM keyed")
            inspector = sa.inspect(connection)
            assert inspector.get_pk_constraint("keyed")["constrained_columns"] == ["b", "a"]
            assert inspector.get_pk_constraint("plain")["constrained_columns"] == []
            assert inspector.get_pk_constraint("seen")["constrained_columns"] == []  # as GE sees
            assert inspector.get_pk_constraint("keyed", schema="other")["constrained_columns"] == []
    finally:
        engine.dispose()

"""GE's DuckDB dialect answers the primary-key and column questions from DuckDB's catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_columns_come_from_duckdbs_catalogue_by_name_with_no_type(tmp_path: Path) -> None:
    """What GE's fallback learnt from a `SELECT * LIMIT 1` once SQLAlchemy's PostgreSQL
    catalogue query had failed: the names in order, no type (GE's type branches unchanged)."""
    engine = sa.create_engine(
        f"{register()}:///{tmp_path / 'file.duckdb'}",
        connect_args={"allowed_directories": [f"{tmp_path}/"]},
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (b VARCHAR NOT NULL, a INTEGER, c BOOLEAN)")
            connection.exec_driver_sql("CREATE VIEW v AS SELECT c, a FROM t")
            inspector = sa.inspect(connection)
            columns = inspector.get_columns("v")
            assert [c["name"] for c in columns] == ["c", "a"]
            assert all(isinstance(c["type"], sa.types.NullType) for c in columns)
            assert [c["name"] for c in inspector.get_columns("t")] == ["b", "a", "c"]
            assert [c["nullable"] for c in inspector.get_columns("t")] == [False, True, True]
            with pytest.raises(sa.exc.NoSuchTableError):
                inspector.get_columns("missing")
            with pytest.raises(sa.exc.NoSuchTableError):
                inspector.get_columns("v", schema="other")
    finally:
        engine.dispose()

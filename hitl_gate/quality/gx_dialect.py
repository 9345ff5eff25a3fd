"""A DuckDB SQLAlchemy dialect that Great Expectations' SQL engine can read results from.

`duckdb_engine` uses the DuckDB connection itself as the DB-API cursor, so any statement run
after a query discards that query's pending result. Great Expectations 1.24 fetches a query's
rows after handing its connection back, and SQLAlchemy rolls the connection's transaction back
on the way: every metric then came back empty ("list index out of range" in GE). With begin,
commit and rollback as no-ops each statement runs in DuckDB's own autocommit mode, which is
what a read-only validation wants, and the result survives until it is fetched.

The dialect also restricts each connection's file access to the directories given as the
connect argument `allowed_directories` (`expectation_batches.readable_directories`), so GE's
queries can read the warehouse's Parquet and nothing else, and answers SQLAlchemy's
primary-key and column reflection (which GE runs on every batch) from DuckDB's own catalogue.
"""

from __future__ import annotations

from typing import Any

import duckdb_engine
from sqlalchemy import text
from sqlalchemy.dialects import registry
from sqlalchemy.engine.interfaces import ReflectedColumn, ReflectedPrimaryKeyConstraint
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.types import NullType

from hitl_gate.core.database import restrict_to_directories

URL_SCHEME = "duckdb+autocommit"


class AutocommitDuckDBDialect(duckdb_engine.Dialect):
    """`duckdb_engine` without SQLAlchemy-driven transactions (see the module docstring)."""

    supports_statement_cache = False  # as duckdb_engine declares; SQLAlchemy asks each subclass

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """`duckdb_engine`'s connection, its file access restricted before GE uses it and no
        progress bar drawn on stdout (`quiet_duckdb`)."""
        allowed = cparams.pop("allowed_directories", None)
        if allowed is None:
            raise ValueError("a hitl-gate DuckDB engine needs connect_args allowed_directories")
        connection = super().connect(*cargs, **cparams)
        connection.execute("SET enable_progress_bar = false")  # as `quiet_connect` does
        restrict_to_directories(connection, allowed)
        return connection

    def get_pk_constraint(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> ReflectedPrimaryKeyConstraint:
        """The primary key of `table_name`, from DuckDB's own catalogue.

        GE asks for it before reading a batch's columns. The PostgreSQL catalogue query
        SQLAlchemy would send fails on DuckDB's `pg_catalog` (GE then records no key), after
        costing about as much as a metric query; the views GE validates have no key.
        """
        rows = connection.execute(
            text(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE constraint_type = 'PRIMARY KEY' AND table_name = :table "
                "AND (CAST(:schema AS VARCHAR) IS NULL OR schema_name = :schema)"
            ),
            {"table": table_name, "schema": schema},
        ).fetchall()
        return {"constrained_columns": list(rows[0][0]) if rows else [], "name": None}

    def get_columns(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedColumn]:
        """The columns of `table_name`, in order, from DuckDB's catalogue, typed `NullType`.

        GE reflects a batch's columns before every validation. The PostgreSQL catalogue query
        SQLAlchemy would send fails on DuckDB (no `pg_catalog.pg_collation`), after which GE
        learnt the names alone from a `SELECT * ... LIMIT 1` of the view (binding its Parquet
        files again). The same names with no type (`NullType`, as GE's fallback knows none)
        leave GE's type-dependent branches (a text column refused by `..._to_be_between`,
        booleans in `..._to_be_in_set`) as they were: the same results for one catalogue read.
        An unknown table raises `NoSuchTableError`, which sends GE to its fallback as before.
        """
        rows = connection.execute(
            text(
                "SELECT column_name, is_nullable FROM duckdb_columns() "
                "WHERE database_name = current_database() AND table_name = :table "
                "AND schema_name = coalesce(CAST(:schema AS VARCHAR), current_schema()) "
                "ORDER BY column_index"
            ),
            {"table": table_name, "schema": schema},
        ).fetchall()
        if not rows:
            raise NoSuchTableError(table_name)
        return [
            {"name": name, "type": NullType(), "nullable": bool(nullable), "default": None}
            for name, nullable in rows
        ]

    def do_begin(self, dbapi_connection: Any) -> None:
        """No explicit transaction: DuckDB commits each statement by itself."""

    def do_commit(self, dbapi_connection: Any) -> None:
        """Nothing to commit: see `do_begin`."""

    def do_rollback(self, dbapi_connection: Any) -> None:
        """A ROLLBACK here would wipe the pending result GE has yet to fetch."""


def register() -> str:
    """Make `duckdb+autocommit://` URLs resolve to this dialect; returns the URL scheme."""
    registry.register("duckdb.autocommit", __name__, "AutocommitDuckDBDialect")
    return URL_SCHEME

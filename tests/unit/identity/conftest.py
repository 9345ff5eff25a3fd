"""The registry tests' shared set-up: a key folder, an audit database, and a staffed registry
(the administrator bootstrapped, then `ana` and `ben` added as senior underwriters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from hitl_gate.core.database import audit_connection
from tests.blank_audit_db import blank_if_missing
from tests.identity_fixtures import Keyring, add_person, bootstrap


@pytest.fixture
def keys(tmp_path: Path) -> Keyring:
    folder = tmp_path / "keys"
    folder.mkdir()
    return Keyring(folder)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with audit_connection(blank_if_missing(tmp_path / "audit.duckdb")) as connection:
        yield connection


@pytest.fixture
def staffed(con: duckdb.DuckDBPyConnection, keys: Keyring) -> duckdb.DuckDBPyConnection:
    bootstrap(con, keys)
    add_person(con, keys, "ana", ["consumer_credit:senior_underwriter"])
    add_person(con, keys, "ben", ["consumer_credit:senior_underwriter"])
    return con

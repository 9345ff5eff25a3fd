"""Opening MLflow stores copied from the blank store: every store's own stamp is checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hitl_gate.core.new_database import place_new_database
from models.mlflow_store import DATABASE_FILE, blank_store, configure, tracking_uri

pytestmark = pytest.mark.slow  # MLflow's migrations on a new file (the blank store)


def test_a_store_with_another_stamp_is_still_refused(tmp_path: Path) -> None:
    """A store whose migrations stopped earlier (an older MLflow's) is refused as MLflow
    refuses it, after other stores were opened in the process."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(tmp_path / "current")
    older = tmp_path / "older"
    older.mkdir()
    assert place_new_database(older / DATABASE_FILE, blank_store())
    con = sqlite3.connect(older / DATABASE_FILE)
    with con:
        con.execute("UPDATE alembic_version SET version_num = 'an-older-revision'")
    con.close()
    uri = tracking_uri(older)
    with pytest.raises(MlflowException, match="out-of-date database schema"):
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()

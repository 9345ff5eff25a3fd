"""Opening MLflow stores: the newest migration is worked out once per process
(`models.mlflow_store.keep_schema_head`), and every store's own stamp is still checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hitl_gate.core.new_database import place_new_database
from models.mlflow_store import DATABASE_FILE, blank_store, configure, tracking_uri

pytestmark = pytest.mark.slow  # MLflow's migrations on a new file (the blank store)


def test_the_kept_head_is_the_newest_migration_of_the_installed_scripts(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils

    configure(tmp_path / "one")
    configure(tmp_path / "two")
    kept = utils._get_latest_schema_revision
    assert kept.cache_info().misses == 1  # type: ignore[attr-defined]
    assert kept.cache_info().hits >= 1  # type: ignore[attr-defined]
    scripts = ScriptDirectory.from_config(utils._get_alembic_config(db_url=""))
    assert [kept()] == scripts.get_heads()  # alembic's own answer, read afresh
    engine = utils.create_sqlalchemy_engine(tracking_uri(tmp_path / "two"))
    try:
        assert utils._get_schema_version(engine) == kept()  # the stores opened are at the head
    finally:
        engine.dispose()


def test_a_store_with_another_stamp_is_still_refused(tmp_path: Path) -> None:
    """The head is kept, the database's stamp is not: a store whose migrations stopped earlier
    (an older MLflow's) is refused as MLflow refuses it, after other stores were opened."""
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

"""Gold seeding in the day's export (`export_review_days(gold_rows=...)`): the gold cases are
recorded as gold before their batch, sit in the batch like real cases, and a re-run of the day
seeds the same ones, so the batches are reused rather than replaced."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.review.export.days import ExportedDays, export_review_days
from tests.key_pool import PooledKeyring
from tests.review_fixtures import CASE_ID, CREATED, DAY
from tests.review_people import register_reviewers
from tests.unit.review.test_reassignment import routed

pytestmark = pytest.mark.slow  # ssh-keygen for the registry


def gold_domain(tmp_path: Path) -> DomainConfig:
    """consumer_credit with a quarter of the analyst queue seeded as gold."""
    domain = load_domain("consumer_credit")
    source = domain.source_dir / str(domain.review.settings)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["queues"]["credit_analyst"]["gold_rate"] = 0.25
    path = tmp_path / "review.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return domain.model_copy(
        update={"review": domain.review.model_copy(update={"settings": str(path)})}
    )


def past() -> pl.DataFrame:
    """Last year's executed approvals, as the routing stage stored them."""
    return routed().with_columns(pl.format("APP-9{}", pl.col(CASE_ID).str.slice(5)).alias(CASE_ID))


def export(db: Path, tmp_path: Path, key: bytes, domain: DomainConfig) -> ExportedDays:
    return export_review_days(
        lambda: audit_connection(db), routed().lazy(), [DAY], domain=domain,
        batches_dir=tmp_path / "batches", key=key, created_at=CREATED, run_id="r",
        gold_rows=past().lazy(),
    )  # fmt: skip


def test_gold_is_recorded_seeded_and_stable_across_reruns(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "audit.duckdb"
    keys = PooledKeyring(tmp_path / "keys")
    keys.folder.mkdir()
    register_reviewers(db, keys)
    then = datetime(2017, 6, 1, tzinfo=UTC)
    with audit_connection(db) as con:
        for case in past()[CASE_ID].head(4):
            con.execute(
                "INSERT INTO executions VALUES ('consumer_credit', ?, ?, 'approve', 'policy', "
                "NULL, 'auto_approve', 'p', 'm', [], 'r', ?)", [case, then.date(), then]
            )  # fmt: skip
            con.execute(
                "INSERT INTO outcomes VALUES ('consumer_credit', ?, 'Charged Off', ?, 'f', 's', "
                "1, TRUE, 'r', ?)", [case, then.date(), then]
            )  # fmt: skip
    domain = gold_domain(tmp_path)
    first = export(db, tmp_path, key, domain)
    with audit_connection(db, read_only=True) as con:
        gold = query_frame(con, "SELECT * FROM review_gold_cases")
        members = query_frame(con, "SELECT case_id, batch_id FROM review_batch_cases")
    assert gold.height == 1  # 4 analyst cases * 0.25
    (gold_id,) = gold["case_id"].to_list()
    assert gold["expected_verdict"].to_list() == ["decline"]  # charged off
    assert gold_id in members["case_id"].to_list()
    assert gold_id not in routed()[CASE_ID].to_list() + past()[CASE_ID].to_list()
    again = export(db, tmp_path, key, domain)
    assert [b.batch_id for _, b in again.batches] == [b.batch_id for _, b in first.batches]
    with audit_connection(db, read_only=True) as con:
        assert query_frame(con, "SELECT case_id FROM review_gold_cases")["case_id"].to_list() == [
            gold_id
        ]

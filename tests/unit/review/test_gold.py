"""Gold cases: seeded at the queue's rate, under ids shaped like real ones, exported exactly like
real cases (no column, value or manifest field tells them apart), the same again on a re-run."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.review.export.batches import export_review_batches
from hitl_gate.review.gold import GoldSeeder, gold_candidates, shaped_like, shared_prefix
from hitl_gate.review.gold_cases import gold_case_ids
from hitl_gate.review.settings import review_settings
from tests.review_fixtures import CASE_ID, CREATED, DAY, batch_export, review_cases

DOMAIN = load_domain("consumer_credit")
SHAPE = re.compile(r"APP-\d{3}")


def settings(rate: float):  # noqa: ANN201 - the settings type, with one queue's rate changed
    base = review_settings(DOMAIN)
    assert base is not None
    queues = dict(base.queues)
    queues["credit_analyst"] = queues["credit_analyst"].model_copy(update={"gold_rate": rate})
    return base.model_copy(update={"queues": queues})


def past_rows() -> pl.DataFrame:
    """Four earlier analyst cases (APP-100...) with known outcomes."""
    return (
        review_cases()
        .head(4)
        .with_columns(pl.format("APP-1{}", pl.col(CASE_ID).str.slice(5)).alias(CASE_ID))
    )


def seeder(rate: float, earlier: pl.DataFrame | None = None) -> GoldSeeder:
    sources = past_rows()[CASE_ID].to_list()
    candidates = pl.DataFrame(
        {"source_case_id": sources, "expected_verdict": ["decline", "approve"] * 2,
         "basis": ["outcome"] * 4}
    )  # fmt: skip
    empty = pl.DataFrame(
        schema={"case_id": pl.String, "source_case_id": pl.String, "expected_verdict": pl.String,
                "basis": pl.String, "queue": pl.String, "partition_date": pl.Date}
    )  # fmt: skip
    return GoldSeeder(
        DOMAIN, settings(rate), b"k" * 32, CREATED, candidates, past_rows(),
        set(sources), earlier if earlier is not None else empty,
    )  # fmt: skip


def test_ids_keep_the_shared_prefix_and_vary_the_rest() -> None:
    assert shared_prefix("APP-003", ["APP-001", "APP-003", "APP-017"]) == 5
    assert shared_prefix("APP-003", ["APP-003"]) == 4  # a lone id: its digits still vary
    assert shared_prefix("X1", ["Y2", "X1"]) == 0
    made = shaped_like("APP-003", b"k", "salt", keep=5)
    assert made.startswith("APP-0") and SHAPE.fullmatch(made)


def test_ids_keep_the_shape_of_the_template() -> None:
    for template in ("APP-042", "LC-2018-000123", "ab12_CD"):
        made = shaped_like(template, b"k", "salt")
        assert len(made) == len(template)
        assert [c.isdigit() for c in made] == [c.isdigit() for c in template]
        assert [c.isupper() for c in made] == [c.isupper() for c in template]
        assert [c for c in made if not c.isalnum()] == [c for c in template if not c.isalnum()]


def test_rate_rounds_down_per_queue_and_zero_is_off() -> None:
    cases = review_cases()
    assert seeder(0.0).seed(cases, DAY).equals(cases)
    assert seeder(0.2).seed(cases, DAY).height == 7  # 4 analyst cases * 0.2 < 1
    gold = seeder(0.5)
    seeded = gold.seed(cases, DAY)
    assert seeded.height == 9 and seeded.schema == cases.schema
    new = [m["case_id"] for m in gold.members]
    assert len(new) == 2 and all(SHAPE.fullmatch(str(i)) for i in new)
    assert not set(new) & set(cases[CASE_ID]) and not set(new) & set(past_rows()[CASE_ID])
    assert {m["queue"] for m in gold.members} == {"credit_analyst"}


def test_a_rerun_seeds_the_same_gold_under_the_same_ids() -> None:
    first = seeder(0.5)
    seeded = first.seed(review_cases(), DAY)
    again = seeder(0.5, earlier=pl.DataFrame(first.members).drop("domain", "seeded_at"))
    assert again.seed(review_cases(), DAY).equals(seeded)
    assert again.members == []  # nothing new to record


def test_exported_gold_rows_are_shaped_like_real_rows(tmp_path: Path, key: bytes) -> None:
    gold = seeder(0.5)
    seeded = gold.seed(review_cases(), DAY).filter(pl.col("review_queue") == "credit_analyst")
    export = batch_export(
        DOMAIN, tmp_path / "batches", key, context={"policy_version": "v1"}, settings=settings(0.5)
    )
    (batch,) = export_review_batches(seeded, export)
    with (batch.folder / "cases.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    gold_ids = {str(m["case_id"]): str(m["source_case_id"]) for m in gold.members}
    by_id = {row[CASE_ID]: row for row in rows}
    assert set(gold_ids) <= set(by_id)
    # The real source, exported as a real case, reads exactly like its gold copy but for the id.
    sources = past_rows().filter(pl.col(CASE_ID).is_in(list(gold_ids.values())))
    (real_batch,) = export_review_batches(
        sources.with_columns(pl.lit("credit_analyst").alias("review_queue")),
        batch_export(
            DOMAIN, tmp_path / "real", key, context={"policy_version": "v1"}, settings=settings(0.5)
        ),
    )
    with (real_batch.folder / "cases.csv").open(encoding="utf-8") as handle:
        real = {row[CASE_ID]: row for row in csv.DictReader(handle)}
    for gold_id, source in gold_ids.items():
        shown, original = dict(by_id[gold_id]), dict(real[source])
        for row in (shown, original):
            row.pop(CASE_ID), row.pop("batch_id")
        assert shown == original
        assert list(by_id[gold_id]) == list(rows[0])  # the same columns in the same order
    manifest = (batch.folder / "manifest.json").read_text(encoding="utf-8")
    assert "gold" not in manifest.lower()
    assert not any(source in manifest for source in gold_ids.values())
    assert set(json.loads(manifest)["case_ids"]) >= set(gold_ids)


def test_candidates_from_outcomes_and_declarations(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with audit_connection(tmp_path / "a.duckdb") as con:
        for case, outcome in (("p1", "Charged Off"), ("p2", "Fully Paid"), ("p3", "Fully Paid")):
            con.execute(
                "INSERT INTO executions VALUES (?, ?, ?, 'approve', 'policy', NULL, "
                "'auto_approve', 'p', 'm', [], 'r', ?)", [DOMAIN.name, case, DAY, now]
            )  # fmt: skip
            con.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, 'f', 'sha', 1, TRUE, 'r', ?)",
                [DOMAIN.name, case, outcome, DAY, now],
            )
        con.execute(
            "INSERT INTO review_gold_declared VALUES (?, 'p3', 'decline', 'cho', ?)",
            [DOMAIN.name, now],
        )
        found = gold_candidates(con, DOMAIN)
        assert gold_case_ids(con, DOMAIN.name) == set()
    expected = dict(zip(found["source_case_id"], found["expected_verdict"], strict=True))
    positive = DOMAIN.model.label.positive_values
    assert expected["p1"] == ("decline" if "Charged Off" in positive else "approve")
    assert expected["p2"] == ("decline" if "Fully Paid" in positive else "approve")
    assert expected["p3"] == "decline"  # declared wins over the observed outcome
    assert dict(zip(found["source_case_id"], found["basis"], strict=True))["p3"] == "declared"


@pytest.mark.parametrize("rate", [-0.1, 0.6])
def test_rate_is_bounded(rate: float) -> None:
    with pytest.raises(ValueError, match="gold_rate"):
        settings(0.0).queues["credit_analyst"].model_validate(
            {**settings(0.0).queues["credit_analyst"].model_dump(), "gold_rate": rate}
        )

"""The review assets called directly on a small routed day in a temporary home."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from dagster import build_asset_context

from assets.review import build_review_assets
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from pipelines.resources import build_resources
from tests.key_pool import PooledKeyring
from tests.review_fixtures import DAY, review_cases
from tests.review_people import register_reviewers


def _routed() -> pl.LazyFrame:
    return (
        review_cases()
        .with_columns(
            route=pl.lit("human_review"),
            partition_date=pl.lit(DAY),
            policy_version=pl.lit("v1"),
            policy_digest=pl.lit("d1"),
            model_name=pl.lit("consumer_credit_pd"),
            model_version=pl.lit("3"),
            feature_service=pl.lit("fs_v1"),
        )
        .lazy()
    )


def test_review_batches_then_verdicts_on_one_day(hitl_paths: HitlPaths, tmp_path: Path) -> None:
    domain = load_domain("consumer_credit")
    review_batches, reviewer_verdicts = build_review_assets(domain)
    resources = build_resources(hitl_paths)
    (tmp_path / "keys").mkdir()
    register_reviewers(hitl_paths.audit_db, PooledKeyring(tmp_path / "keys"))
    key = DAY.isoformat()

    exported = review_batches(
        context=build_asset_context(partition_key=key),
        routed_decisions=_routed(),
        review=resources["review"],
        audit_db=resources["audit_db"],
    )
    # One analyst batch, one senior batch, and the two four-eyes opinions (two people).
    assert exported.metadata["batches"].value == 4
    assert exported.metadata["cases_for_review"].value == 7
    assert exported.metadata["cases_unassigned"].value == 0
    assert exported.value.height == 9  # the two four-eyes cases are in two batches each
    folders = sorted(
        p.name for p in (hitl_paths.review / "batches").glob("*/*") if not p.name.startswith(".")
    )
    assert folders == sorted(exported.value["batch_id"].unique())

    verdicts = reviewer_verdicts(
        context=build_asset_context(partition_key=key),
        review_batches=exported.value,
        routed_decisions=_routed(),
        review=resources["review"],
        audit_db=resources["audit_db"],
    )
    assert verdicts.value.height == 0  # nothing returned yet
    assert verdicts.metadata["files_processed"].value == 0
    assert verdicts.metadata["escalation_batches"].value == "_none_"
    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        recorded = query_frame(con, "SELECT partition_date, case_count FROM review_batches")
    assert recorded["partition_date"].to_list() == [date(2018, 3, 1)] * 4
    assert recorded["case_count"].sum() == 9


def test_assets_leave_other_domains_files_in_the_inbox(hitl_paths: HitlPaths) -> None:
    domain = load_domain("consumer_credit")
    _, reviewer_verdicts = build_review_assets(domain)
    resources = build_resources(hitl_paths)
    inbox: Path = resources["review"].inbox_dir
    inbox.mkdir(parents=True)
    other = inbox / "other.csv"
    pl.DataFrame({"batch_id": ["lending_club-20160101-loan_officer-001-x"]}).write_csv(other)
    with audit_connection(hitl_paths.audit_db):
        pass
    result = reviewer_verdicts(
        context=build_asset_context(partition_key=DAY.isoformat()),
        review_batches=pl.DataFrame(),
        routed_decisions=_routed(),
        review=resources["review"],
        audit_db=resources["audit_db"],
    )
    assert result.metadata["files_processed"].value == 0
    assert other.exists()

"""The review export stage on small frames: which cases go out, under which day, and records."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.review.export.days import (
    cases_to_review,
    export_review_days,
    manifest_context,
    review_groups,
)
from hitl_gate.review.intake.days import first_row_of_day
from tests.key_pool import PooledKeyring
from tests.review_fixtures import CASE_ID, CREATED, DAY, review_cases
from tests.review_people import register_reviewers

NEXT = date(2018, 3, 2)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _routed() -> pl.DataFrame:
    """The seven review cases on DAY, plus one auto-approved, one deferred, one carried over."""
    cases = review_cases().with_columns(
        route=pl.lit("human_review"),
        partition_date=pl.lit(DAY),
        review_deferred=pl.lit(False),
        carried_from=pl.lit(None, dtype=pl.Date),
        policy_version=pl.lit("v1"),
        policy_digest=pl.lit("d1"),
        model_name=pl.lit("consumer_credit_pd"),
        model_version=pl.lit("3"),
        feature_service=pl.lit("fs_v1"),
    )
    extra = cases.head(3).with_columns(
        pl.Series(CASE_ID, ["APP-100", "APP-101", "APP-102"]),
        route=pl.Series(["auto_approve", "human_review", "human_review"]),
        review_deferred=pl.Series([False, True, False]),
        partition_date=pl.lit(NEXT),
        carried_from=pl.Series([None, None, DAY], dtype=pl.Date),
    )
    return pl.concat([cases, extra])


def test_only_undeferred_unexecuted_review_cases_go_out(domain: DomainConfig) -> None:
    executed = pl.Series("case_id", ["APP-001"])
    out = cases_to_review(_routed().lazy(), executed, domain)
    assert sorted(out[CASE_ID]) == ["APP-000", *(f"APP-00{i}" for i in range(2, 7)), "APP-102"]


def test_a_carried_case_is_batched_under_the_day_it_came_from(domain: DomainConfig) -> None:
    out = cases_to_review(_routed().lazy(), pl.Series("case_id", [], dtype=pl.String), domain)
    groups = review_groups(out, [DAY, NEXT])
    assert [(day, batch_day, part.height) for day, batch_day, part in groups] == [
        (DAY, DAY, 7),
        (NEXT, DAY, 1),
    ]
    assert "__origin" not in groups[0][2].columns


def test_manifest_context_and_first_row_of_day() -> None:
    routed = _routed()
    assert manifest_context(routed)["feature_service"] == "fs_v1"
    first = first_row_of_day(routed.lazy(), NEXT)
    assert first is not None and first[CASE_ID].item() == "APP-100"
    assert first_row_of_day(routed.lazy(), date(2018, 3, 9)) is None


def test_export_records_the_days_batches_and_replaces_them(
    tmp_path: Path, domain: DomainConfig, key: bytes
) -> None:
    db = tmp_path / "audit.duckdb"
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    register_reviewers(db, PooledKeyring(keys_dir))

    def run(run_id: str):
        return export_review_days(
            lambda: audit_connection(db),
            _routed().lazy(),
            [DAY, NEXT],
            domain=domain,
            batches_dir=tmp_path / "batches",
            key=key,
            created_at=CREATED,
            run_id=run_id,
        )

    first = run("r1")
    assert first.cases_for_review == 8 and first.cases_unassigned == 0
    members = first.membership()
    # Eight cases; the two four-eyes cases are in two batches each (one per opinion).
    assert members.height == 10 and members.schema["partition_date"] == pl.Date
    carried = members.filter(pl.col("case_id") == "APP-102")
    assert carried["partition_date"].item() == NEXT  # exported by NEXT's run ...
    assert "20180301" in carried["batch_id"].item()  # ... in a batch named after DAY
    again = run("r2")
    assert again.membership().equals(members)  # same batches: ids derive from the cases
    with audit_connection(db, read_only=True) as con:
        batches = query_frame(con, "SELECT batch_id, run_id, case_count FROM review_batches")
        cases = query_frame(con, "SELECT count(*) AS n FROM review_batch_cases")
        seconds = query_frame(con, "SELECT count(*) AS n FROM review_second_opinion_cases")
        assigned = query_frame(con, "SELECT batch_id, seq FROM review_assignments")
    assert set(batches["run_id"]) == {"r2"} and batches["case_count"].sum() == 10
    assert cases["n"].item() == 8 and seconds["n"].item() == 2
    # Every batch assigned once (seq 1), and the re-run added no second assignment.
    assert sorted(assigned["batch_id"]) == sorted(batches["batch_id"])
    assert set(assigned["seq"]) == {1}


def test_routed_days_without_a_deferred_column_send_every_review_case(
    domain: DomainConfig,
) -> None:
    """Days routed before capacity existed have no `review_deferred` column."""
    routed = _routed().drop("review_deferred").lazy()
    out = cases_to_review(routed, pl.Series("case_id", [], dtype=pl.String), domain)
    assert out.height == 9  # the seven, the deferred one and the carried one


def _groups_day_by_day(
    to_review: pl.DataFrame, days: list[date]
) -> list[tuple[date, date, list[str]]]:
    """`review_groups`' definition: each day filtered, then grouped by its batch's day."""
    origin = pl.coalesce("carried_from", "partition_date")
    groups = []
    for day in days:
        todays = to_review.filter(pl.col("partition_date") == day)
        tagged = todays.with_columns(origin.alias("__origin"))
        for (batch_day,), part in tagged.group_by("__origin", maintain_order=True):
            groups.append((day, batch_day, part[CASE_ID].to_list()))
    return groups


def test_review_groups_are_the_day_by_day_groups() -> None:
    """Days interleaved in the frame, carried cases from two earlier days among a day's own,
    export days in another order than the frame's and one day with no cases."""
    d0, d1, d2, d3 = (date(2018, 3, n) for n in (1, 2, 3, 4))
    frame = pl.DataFrame(
        {
            CASE_ID: [f"C{n:02d}" for n in range(10)],
            "partition_date": [d2, d1, d2, d2, d1, d2, d2, d1, d0, d2],
            "carried_from": [None, None, d1, d0, None, None, d1, d0, None, d0],
        },
        schema={CASE_ID: pl.String, "partition_date": pl.Date, "carried_from": pl.Date},
    )
    days = [d2, d3, d1, d0]
    got = [(d, b, part[CASE_ID].to_list()) for d, b, part in review_groups(frame, days)]
    assert got == _groups_day_by_day(frame, days)
    assert [(d, b) for d, b, _ in got][:3] == [(d2, d2), (d2, d1), (d2, d0)]

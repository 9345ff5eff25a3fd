"""Fairness counted in DuckDB equals `fairness_table` / `fairness_metrics` on frames.

Two run days of random cases, protected values in the stored validated-case files (one
attribute as text with missing values, one numeric in declared intervals, a case present in
two days' files, where the last one counts), compared with the frame path the CLI uses.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.lawful import ProtectedAttribute
from hitl_gate.observability.facts import case_facts
from hitl_gate.observability.fairness import STAGES, fairness_metrics, fairness_table
from hitl_gate.observability.fairness_db import FAIR, fairness_db, load_fairness_cases, pd_by_group
from hitl_gate.observability.fairness_period import (
    CASE_COLUMNS,
    read_protected_values,
    with_protected,
)
from tests.unit.observability.test_metrics_db import random_cases

DAY = date(2018, 2, 10)
DECLINE = ["D", "E"]


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    declared = {
        "homeownership": ProtectedAttribute(category="other", reference="OWN"),
        "age": ProtectedAttribute(category="age", bins=[25, 62]),
    }
    return load_domain("consumer_credit").model_copy(update={"protected_attributes": declared})


def _stored(tmp_path: Path, domain: DomainConfig, cases: pl.DataFrame, seed: int) -> Path:
    warehouse = tmp_path / "warehouse"
    folder = warehouse / domain.name / "validated_cases"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for day in sorted(set(cases["partition_date"].to_list())):
        ids = cases.filter(pl.col("partition_date") == day)["case_id"].to_list()
        if day != DAY:
            ids = ids + cases.filter(pl.col("partition_date") == DAY)["case_id"].to_list()[:5]
        n = len(ids)
        pl.DataFrame(
            {
                domain.case_id: ids,
                "homeownership": [None if rng.random() < 0.1 else v
                                  for v in rng.choice(["OWN", "RENT", "MORTGAGE"], n)],
                "age": [None if rng.random() < 0.05 else int(v)
                        for v in rng.integers(18, 80, n)],
                "annual_income": rng.normal(50_000, 9_000, n),
            }
        ).write_parquet(folder / f"{day}.parquet")  # fmt: skip
    return warehouse


@pytest.mark.parametrize(("seed", "sizes"), [(1, [400, 250]), (2, [400, 250]),
                                             (3, [300, 7, 120, 2, 260, 90])])  # fmt: skip
def test_fairness_in_duckdb_equals_the_frame_computation(
    tmp_path: Path, domain: DomainConfig, seed: int, sizes: list[int]
) -> None:
    """Each day's rows are sliced from one PD array per group: six days of uneven sizes (a
    day of 2 cases lacks most groups) must give every day's table exactly."""
    days = [DAY + timedelta(days=i) for i in range(len(sizes))]
    frame = pl.concat(
        [
            random_cases(seed + 5 * i, day, n)
            for i, (day, n) in enumerate(zip(days, sizes, strict=True))
        ]
    )
    warehouse = _stored(tmp_path, domain, frame, seed)
    con = duckdb.connect()
    con.register("incoming", frame.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming")
    con.unregister("incoming")
    cases = con.sql(
        f"SELECT {', '.join(CASE_COLUMNS)} FROM case_stage_times ORDER BY partition_date, case_id"
    ).pl()
    attributed = with_protected(cases, read_protected_values(warehouse, domain, days))
    attributes, confidence = domain.protected_attributes, domain.fairness.confidence
    table, rows = fairness_db(con, domain, days, DECLINE, warehouse)
    expected = fairness_table(attributed, attributes, DECLINE, confidence)
    assert expected.height > 30 and set(expected["stage"]) == {
        "model_band", "policy_route", "human_verdict", "final_action",
    }  # fmt: skip
    assert "(missing)" in set(expected["group"]) and "[25, 62)" in set(expected["group"])
    assert_frame_equal(table, expected, check_exact=True)
    assert_frame_equal(
        rows, fairness_metrics(attributed, attributes, DECLINE, confidence), check_exact=True
    )
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_one_sorted_read_per_attribute_gives_each_stages_pd_in_case_order(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """`pd_by_group` reads an attribute's cases once for the four stages; each stage's PD
    masked out of it equals that stage's own read (its cases by group in case order, what
    `_stage_rows` read per stage before), nulls and order included."""
    days = [DAY, DAY + timedelta(days=1)]
    frame = pl.concat([random_cases(31, days[0], 300), random_cases(32, days[1], 120)])
    warehouse = _stored(tmp_path, domain, frame, 31)
    con = duckdb.connect()
    con.register("incoming", frame.to_arrow())
    con.execute("CREATE TABLE case_stage_times AS SELECT * FROM incoming")
    with case_facts(con, domain.name, days, DECLINE):
        present = load_fairness_cases(con, domain, days, DECLINE, warehouse)
        for name in present:
            groups = pd_by_group(con, name)
            for stage in STAGES:
                own = con.sql(
                    f'SELECT "g_{name}" AS "group", pd FROM {FAIR} WHERE {stage} IS NOT NULL '
                    'ORDER BY "group", case_order'
                ).pl()
                assert own.height > 0
                for (group,), part in own.partition_by("group", as_dict=True).items():
                    values, missing = groups[str(group)].of(stage)
                    np.testing.assert_array_equal(missing, part["pd"].is_null().to_numpy())
                    np.testing.assert_array_equal(values, part["pd"].cast(pl.Float64).to_numpy())
                # A stage's groups are the attribute's groups that reached it.
                assert {str(g) for g in own["group"].unique()} <= set(groups)
    assert present == ["homeownership", "age"]

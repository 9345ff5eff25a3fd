"""Outcome flags read from the files by DuckDB equal `outcome_flags(read_outcomes(...))`.

The asset used to read every outcome file into a Polars frame; `outcomes_db` reads them in
DuckDB. The files here hit the corners of "the latest observation per case": a case repeated
within a file and across files, columns in another order, a file without the label column
(its cases' label becomes null), empty and quoted-empty labels, a label with a comma, and
ids no fact has.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.observability.facts import case_facts
from hitl_gate.observability.metrics_db import decision_metrics_db
from hitl_gate.observability.outcomes_db import OUTCOMES, OutcomeFiles, metric_outcomes
from models.outcomes import outcome_flags, read_outcomes
from tests.unit.observability.test_metrics_db import (
    AS_OF,
    DAY,
    DECLINE,
    _case_stage_times,
    random_cases,
)

LABELS = ["Current", "Charged Off", "Fully Paid", "Late (16-30 days)", "Late, maybe", "", None]


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _write_files(root: Path, domain: DomainConfig, ids: list[str], seed: int) -> None:
    """Three outcome files over `ids` (and ids of no fact), with repeats and odd labels."""
    rng = np.random.default_rng(seed)
    folder = root / domain.outcomes_subdir
    folder.mkdir(parents=True)
    key, label = domain.case_id, domain.model.label.column

    def labels(n: int) -> list[str | None]:
        return [LABELS[i] for i in rng.integers(0, len(LABELS), n)]

    first = list(rng.choice(ids, 300)) + ["nobody-1", "nobody-2"]  # repeats within the file
    pl.DataFrame({key: first, label: labels(len(first)), "extra": range(len(first))}).write_csv(
        folder / "2018-01.csv"
    )
    second = list(rng.choice(ids, 120))
    pl.DataFrame({label: labels(len(second)), key: second}).write_csv(folder / "2018-02.csv")
    third = list(rng.choice(ids, 30))  # no label column: these cases' label becomes null
    pl.DataFrame({key: third, "note": ["x"] * len(third)}).write_csv(folder / "2018-03.csv")


@pytest.mark.parametrize("seed", [1, 2])
def test_flags_from_the_files_are_the_frames_flags(
    tmp_path: Path, domain: DomainConfig, seed: int
) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    frame = pl.concat([random_cases(seed, days[0], 400), random_cases(seed + 5, days[1], 200)])
    con = duckdb.connect()
    _case_stage_times(con, frame)
    _write_files(tmp_path, domain, frame["case_id"].to_list(), seed)
    flags = outcome_flags(read_outcomes(tmp_path, domain), domain)
    with (
        case_facts(con, "consumer_credit", days, DECLINE),
        metric_outcomes(con, OutcomeFiles.of(tmp_path, domain)) as known,
    ):
        got = con.sql(f"SELECT case_id, bad FROM {OUTCOMES} ORDER BY case_id").pl()
    expected = flags.filter(pl.col("case_id").is_in(frame["case_id"].implode())).sort("case_id")
    assert known
    assert expected["bad"].null_count() > 0 and expected["bad"].sum() > 0
    assert_frame_equal(got, expected, check_exact=True)
    # The first observation of a repeated case is not the one kept: the test can tell.
    first = pl.read_csv(tmp_path / domain.outcomes_subdir / "2018-01.csv", infer_schema=False)
    assert first.unique(domain.case_id, keep="first").height < first.height


@pytest.mark.parametrize("seed", [3, 4])
def test_metrics_with_the_files_are_the_metrics_with_the_frame(
    tmp_path: Path, domain: DomainConfig, seed: int
) -> None:
    days = [DAY]
    frame = random_cases(seed, DAY, 500)
    con = duckdb.connect()
    _case_stage_times(con, frame)
    _write_files(tmp_path, domain, frame["case_id"].to_list(), seed)
    common = {"as_of": AS_OF, "decline_bands": DECLINE}
    expected = decision_metrics_db(
        con, "consumer_credit", days,
        outcomes=outcome_flags(read_outcomes(tmp_path, domain), domain), **common,
    )  # fmt: skip
    got = decision_metrics_db(
        con, "consumer_credit", days, outcomes=OutcomeFiles.of(tmp_path, domain), **common
    )
    assert {"bad_rate", "outcome_known"} <= set(expected["metric"])
    assert_frame_equal(got, expected, check_exact=True)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_no_outcome_files_gives_no_outcome_metrics(tmp_path: Path, domain: DomainConfig) -> None:
    con = duckdb.connect()
    _case_stage_times(con, random_cases(5, DAY, 50))
    got = decision_metrics_db(
        con, "consumer_credit", [DAY], as_of=AS_OF, decline_bands=DECLINE,
        outcomes=OutcomeFiles.of(tmp_path, domain),
    )  # fmt: skip
    assert got.height > 0
    assert not {"bad_rate", "outcome_known"} & set(got["metric"])


def test_files_are_read_on_a_connection_that_may_read_only_the_warehouse(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The asset's audit connection may read no file outside the warehouse: the outcome files
    are parsed by a connection of their own, allowed those files alone, and streamed over."""
    from hitl_gate.core.database import restrict_file_access

    frame = random_cases(6, DAY, 300)
    con = duckdb.connect()
    _case_stage_times(con, frame)
    (tmp_path / "warehouse").mkdir()
    restrict_file_access(con, [tmp_path / "warehouse"])
    landing = tmp_path / "landing"
    _write_files(landing, domain, frame["case_id"].to_list(), 6)
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_csv('{landing / domain.outcomes_subdir}/2018-01.csv')")
    common = {"as_of": AS_OF, "decline_bands": DECLINE}
    expected = decision_metrics_db(
        con, "consumer_credit", [DAY],
        outcomes=outcome_flags(read_outcomes(landing, domain), domain), **common,
    )  # fmt: skip
    got = decision_metrics_db(
        con, "consumer_credit", [DAY], outcomes=OutcomeFiles.of(landing, domain), **common
    )
    assert "bad_rate" in set(expected["metric"])
    assert_frame_equal(got, expected, check_exact=True)

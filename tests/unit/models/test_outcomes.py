"""Outcome files: the latest observation per case, and the bad flag metrics and training use."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, load_domain
from models.outcomes import outcome_flags, read_outcomes


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def test_no_outcome_files_is_an_empty_typed_frame(tmp_path: Path, domain: DomainConfig) -> None:
    frame = read_outcomes(tmp_path, domain)
    assert frame.height == 0
    assert frame.schema == pl.Schema({"application_id": pl.String, "loan_status": pl.String})


def test_the_latest_file_wins_per_case(tmp_path: Path, domain: DomainConfig) -> None:
    folder = tmp_path / domain.outcomes_subdir
    folder.mkdir()
    pl.DataFrame(
        {"application_id": ["a", "b"], "loan_status": ["Current", "Current"], "extra": [1, 2]}
    ).write_csv(folder / "2018-03.csv")
    pl.DataFrame({"application_id": ["a"], "loan_status": ["Charged Off"]}).write_csv(
        folder / "2018-04.csv"
    )
    frame = read_outcomes(tmp_path, domain)
    assert frame.columns == ["application_id", "loan_status"]
    assert dict(frame.iter_rows()) == {"a": "Charged Off", "b": "Current"}


def test_flags_mark_the_declared_bad_values(domain: DomainConfig) -> None:
    outcomes = pl.DataFrame(
        {
            "application_id": ["a", "b", "c"],
            "loan_status": ["Charged Off", "Fully Paid", "Late (16-30 days)"],
        }
    )
    flags = outcome_flags(outcomes, domain)
    assert flags.columns == ["case_id", "bad"]
    assert flags.rows() == [("a", True), ("b", False), ("c", True)]

"""The blocking rules around scoring, on hand-built frames: complete inputs, stable scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from hitl_gate.core.database import audit_connection, insert_new_rows
from hitl_gate.core.domain import MonitoringConfig
from models.drift import reference_bins
from models.monitoring import (
    VersionDrift,
    input_completeness,
    judge_score_drift,
    score_drift_by_version,
)

FEATURES = ["f1", "f2"]


def test_complete_features_pass() -> None:
    frame = pl.DataFrame({"case": ["a", "b"], "f1": [1.0, 2.0], "f2": [0.5, 0.1]})
    result = input_completeness(frame, FEATURES, max_missing_share=0.25)
    assert result.passed
    assert result.missing_share == {"f1": 0.0, "f2": 0.0}
    assert (result.rows, result.cases_without_features) == (2, 0)


def test_a_case_without_any_feature_fails_even_under_the_share() -> None:
    """A missing Feast row shows as every feature null: that case must not be scored."""
    frame = pl.DataFrame({"f1": [1.0, None, 3.0, 4.0, 5.0], "f2": [1.0, None, 3.0, 4.0, 5.0]})
    result = input_completeness(frame, FEATURES, max_missing_share=0.5)
    assert result.cases_without_features == 1 and result.features_over_limit == []
    assert not result.passed


def test_a_feature_missing_above_the_share_fails_and_is_named() -> None:
    frame = pl.DataFrame({"f1": [1.0, None, None, 4.0], "f2": [1.0, 2.0, 3.0, None]})
    result = input_completeness(frame, FEATURES, max_missing_share=0.25)
    assert result.missing_share == {"f1": 0.5, "f2": 0.25}
    assert result.features_over_limit == ["f1"]  # at the limit is allowed
    assert not result.passed


def test_an_empty_day_is_complete() -> None:
    frame = pl.DataFrame(schema={"f1": pl.Float64, "f2": pl.Float64})
    result = input_completeness(frame, FEATURES, max_missing_share=0.0)
    assert result.passed and result.missing_share == {"f1": 0.0, "f2": 0.0}


def test_drift_is_judged_only_from_enough_cases() -> None:
    limits = MonitoringConfig(max_psi=0.25, min_cases_for_psi=100)
    versions = [
        VersionDrift("m v1", 50, 0.9),  # too few cases: reported, never blocks
        VersionDrift("m v2", 300, 0.1),
        VersionDrift("m v3", 300, None),  # no reference bins
    ]
    drift = judge_score_drift(versions, limits)
    assert drift.passed and [v.model for v in drift.checked] == ["m v2"]
    assert drift.worst_psi == 0.1
    assert drift.table().rows() == [("m v1", 50, 0.9), ("m v2", 300, 0.1), ("m v3", 300, None)]
    blocked = judge_score_drift([VersionDrift("m v2", 300, 0.3)], limits)
    assert not blocked.passed and [v.model for v in blocked.drifted] == ["m v2"]


def test_no_version_checked_reports_zero_psi() -> None:
    drift = judge_score_drift([], MonitoringConfig())
    assert drift.passed and drift.worst_psi == 0.0 and drift.checked == []


def test_score_drift_reads_each_versions_reference_bins(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    training = rng.beta(2, 30, 2_000)
    bins = reference_bins(training).with_columns(model_name=pl.lit("m"), model_version=pl.lit("1"))
    scores = pl.DataFrame(
        {
            "model_name": "m",
            "model_version": ["1"] * 400 + ["2"] * 10,
            "pd": np.concatenate([rng.beta(2, 30, 400) + 0.3, rng.beta(2, 30, 10)]),
        }
    )
    with audit_connection(tmp_path / "audit.duckdb") as con:
        insert_new_rows(con, "model_reference_bins", bins)
        drift = score_drift_by_version(con, scores, MonitoringConfig(min_cases_for_psi=200))
    by_model = {v.model: v for v in drift.versions}
    assert by_model["m v1"].cases == 400 and by_model["m v1"].psi > 0.25
    assert by_model["m v2"].psi is None  # version 2 has no reference bins stored
    assert not drift.passed and [v.model for v in drift.drifted] == ["m v1"]

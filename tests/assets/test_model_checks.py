"""The blocking checks around scoring, called directly on small frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import AssetChecksDefinition

from assets.model_checks import build_model_checks
from hitl_gate.core.database import audit_connection, insert_new_rows
from hitl_gate.core.domain import DomainConfig, load_domain
from models.drift import reference_bins
from pipelines.resources import AuditDatabase


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture(scope="module")
def checks(domain: DomainConfig) -> dict[str, AssetChecksDefinition]:
    inputs_complete, score_drift = build_model_checks(domain)
    return {"inputs_complete": inputs_complete, "score_drift": score_drift}


def test_inputs_complete_blocks_a_case_without_features(
    domain: DomainConfig, checks: dict[str, AssetChecksDefinition]
) -> None:
    features = domain.model.features
    frame = pl.DataFrame({f: [1.0, 2.0, None, 4.0, 5.0] for f in features})
    result = checks["inputs_complete"](case_features=frame.lazy())
    assert not result.passed
    assert result.metadata["rows"].value == 5
    assert result.metadata["cases_without_features"].value == 1
    assert result.metadata["features_over_limit"].value == []


def test_inputs_complete_passes_a_full_day(
    domain: DomainConfig, checks: dict[str, AssetChecksDefinition]
) -> None:
    frame = pl.DataFrame({f: [1.0, 2.0] for f in domain.model.features})
    assert checks["inputs_complete"](case_features=frame.lazy()).passed


def test_score_drift_blocks_a_shifted_population(
    tmp_path: Path, checks: dict[str, AssetChecksDefinition]
) -> None:
    rng = np.random.default_rng(3)
    database = tmp_path / "audit.duckdb"
    with audit_connection(database) as con:
        insert_new_rows(
            con,
            "model_reference_bins",
            reference_bins(rng.beta(2, 30, 1_000)).with_columns(
                model_name=pl.lit("m"), model_version=pl.lit("1")
            ),
        )
    shifted = pl.DataFrame(
        {"model_name": "m", "model_version": "1", "pd": rng.beta(2, 30, 300) + 0.3}
    )
    result = checks["score_drift"](
        risk_scores=shifted.lazy(), audit_db=AuditDatabase(database=str(database))
    )
    assert not result.passed
    assert result.metadata["checked"].value is True
    assert result.metadata["psi"].value > 0.25
    assert "m v1" in result.metadata["by_model_version"].value

"""A day's scoring: the stale-service guard, slices added up, shadow rows, the audit record.

The model is a real scorecard fitted on a few hundred synthetic rows and saved as an MLflow
pyfunc in tmp_path (no registry): what `load_champion` returns, without the training run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.services import model_service_name
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import DomainConfig, load_domain
from models.champion_scoring import (
    DayScoring,
    Scorers,
    StaleFeatureService,
    check_feature_services,
    record_scoring,
)
from models.drift import reference_bins
from models.scorecard import fit_scorecard
from models.scoring import ChampionModel
from models.training import SKOPS_TRUSTED_TYPES

pytestmark = pytest.mark.slow  # real component work: `make test` runs it, test-fast not

DAY = date(2018, 1, 3)
SCORED_AT = datetime(2018, 1, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def features(domain: DomainConfig, rows: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            domain.case_id: [f"{seed}-{i}" for i in range(rows)],
            "partition_date": [DAY] * rows,
            **{name: rng.normal(size=rows) for name in domain.model.features},
        }
    )


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, domain: DomainConfig) -> ChampionModel:
    import mlflow.pyfunc
    import mlflow.sklearn

    train = features(domain, 300, seed=1)
    x = train.select(domain.model.features)
    y = (x[domain.model.features[0]] + x[domain.model.features[1]] > 1).cast(pl.Int8).to_numpy()
    pipeline = fit_scorecard(x, y)
    path = tmp_path_factory.mktemp("model") / "scorecard"
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pip_requirements=[],
    )
    return ChampionModel(
        name=domain.model.name,
        version="1",
        run_id="run-1",
        model_uri=str(path),
        pyfunc=mlflow.pyfunc.load_model(str(path)),
        artifact_digest="digest-1",
        pipeline=pipeline,
    )


def test_features_of_the_champions_service_or_the_declared_one_may_be_scored(
    domain: DomainConfig, champion: ChampionModel
) -> None:
    own = model_service_name(champion.name, champion.version)
    check_feature_services([own, domain.features.service], domain, champion)


def test_features_of_another_versions_service_are_refused(
    domain: DomainConfig, champion: ChampionModel
) -> None:
    other = model_service_name(champion.name, "2")
    with pytest.raises(StaleFeatureService, match="the champion moved after case_features ran"):
        check_feature_services([other], domain, champion)


def test_slices_add_up_to_the_days_summary(domain: DomainConfig, champion: ChampionModel) -> None:
    scoring = DayScoring(Scorers(champion), domain, "run-x", SCORED_AT)
    first = scoring.score(features(domain, 30, seed=2))
    second = scoring.score(features(domain, 20, seed=3))
    assert first["partition_date"].to_list() == [DAY] * 30
    assert scoring.rows == 50
    assert scoring.mean_pd == pytest.approx(float(pl.concat([first, second])["pd"].mean()))
    assert scoring.band_counts()["len"].sum() == 50
    assert scoring.band_counts()["risk_band"].to_list() == sorted(
        scoring.band_counts()["risk_band"].to_list()
    )
    assert scoring.shadow() is None
    assert scoring.challenger_summary() == {"challenger": "none"}


def test_an_empty_day_has_zero_means(domain: DomainConfig, champion: ChampionModel) -> None:
    scoring = DayScoring(Scorers(champion), domain, "run-x", SCORED_AT)
    scoring.score(features(domain, 0, seed=4))
    assert (scoring.rows, scoring.mean_pd, scoring.mean_pd_calibrated) == (0, 0.0, 0.0)


def test_the_challenger_is_scored_in_shadow_only(
    domain: DomainConfig, champion: ChampionModel
) -> None:
    challenger = replace(champion, version="2", run_id="run-2")
    scoring = DayScoring(Scorers(champion, challenger), domain, "run-x", SCORED_AT)
    scores = scoring.score(features(domain, 25, seed=5))
    assert "challenger_pd" not in scores.columns
    shadow = scoring.shadow()
    assert shadow is not None and shadow.height == 25
    assert shadow.columns[:2] == ["domain", "case_id"] and shadow.columns[-2:] == [
        "run_id",
        "scored_at",
    ]
    assert shadow["challenger_version"].unique().to_list() == ["2"]
    summary = scoring.challenger_summary()
    assert summary["challenger"] == f"{champion.name} v2 (logistic_scorecard)"
    assert summary["shadow_band_agreement"] == 1.0  # the same fitted model


def test_recording_is_idempotent_and_replaces_shadow_rows(
    tmp_path: Path, domain: DomainConfig, champion: ChampionModel
) -> None:
    with_bins = replace(
        champion, reference_bins=tuple(reference_bins(np.linspace(0, 1, 50)).to_dicts())
    )
    challenger = replace(champion, version="2", run_id="run-2")
    scoring = DayScoring(Scorers(with_bins, challenger), domain, "run-x", SCORED_AT)
    scoring.score(features(domain, 10, seed=6))
    with audit_connection(tmp_path / "audit.duckdb") as con:
        record_scoring(con, domain.name, [DAY], with_bins, scoring.shadow())
        record_scoring(con, domain.name, [DAY], with_bins, scoring.shadow())
        versions = query_frame(con, "SELECT model_version, model_run_id FROM model_versions")
        bins = query_frame(con, "SELECT count(*) AS n FROM model_reference_bins")
        shadows = query_frame(con, "SELECT count(*) AS n FROM shadow_scores")
        record_scoring(con, domain.name, [DAY], with_bins, None)  # challenger retired
        after = query_frame(con, "SELECT count(*) AS n FROM shadow_scores")
    assert versions.rows() == [("1", "run-1")]
    assert bins["n"].item() == len(with_bins.reference_bins)
    assert shadows["n"].item() == 10
    assert after["n"].item() == 0

"""The model layer against a real SQLite-backed MLflow registry in a temporary folder.

Training data are the real LendingClub 2018 Q1 sample, with the consumer-credit model
features derived the way `domain.yaml` declares them and application times spread over
January to March, so the March validation split is the one the domain configures.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hitl_gate.core.domain import PROJECT_ROOT, ModelConfig, load_domain
from models.mlflow_store import configure, tracking_uri
from models.scorecard import contributions, feature_frame, fit_scorecard, model_features
from models.scoring import (
    ChampionModel,
    band_index,
    load_champion,
    points,
    promote,
    score_frame,
)
from models.training import TrainedModel, split_by_time, train_and_register
from tests.signed_acts_fixtures import keyring, signed_promote, staff_model_owners

pytestmark = pytest.mark.slow  # real component work: `make test` runs it, test-fast not

SAMPLE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
CASE_ID = "application_id"


def _per_income(column: pl.Expr) -> pl.Expr:
    return column / pl.when(pl.col("annual_income") > 0).then(pl.col("annual_income"))


@pytest.fixture(scope="module")
def model_cfg() -> ModelConfig:
    return load_domain("consumer_credit").model


@pytest.fixture(scope="module")
def training(model_cfg: ModelConfig) -> pl.DataFrame:
    """Sample loans as model-ready rows: case id, event time, the 13 features and the label."""
    raw = pl.read_parquet(SAMPLE)
    month_start = pl.col("issue_month").str.strptime(pl.Date, "%b-%Y").cast(pl.Datetime("us"))
    # A deterministic spread over the first 27 days of the issue month.
    offset = pl.duration(hours=(pl.col("rownames") * 7919) % (27 * 24))
    limit = pl.col("total_credit_limit")
    return raw.select(
        pl.format("app-{}", pl.col("rownames")).alias(CASE_ID),
        (month_start + offset).alias("event_timestamp"),
        _per_income(pl.col("loan_amount")).alias("loan_to_income"),
        _per_income(pl.col("installment") * 12).alias("installment_to_income"),
        (pl.col("total_credit_utilized") / pl.when(limit > 0).then(limit)).alias(
            "credit_utilization"
        ),
        (2018 - pl.col("earliest_credit_line")).alias("credit_history_years"),
        *[pl.col(c) for c in model_cfg.features if c in raw.columns],
        pl.col(model_cfg.label.column).is_in(model_cfg.label.positive_values).alias("label"),
    )


@dataclass(frozen=True)
class Registry:
    mlflow_dir: Path
    first: TrainedModel
    second: TrainedModel


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, training: pl.DataFrame, model_cfg: ModelConfig
) -> Registry:
    """Two trainings into one fresh registry: the first should become champion, not the second."""
    mlflow_dir = tmp_path_factory.mktemp("home") / "mlflow"
    first = train_and_register(training, model_cfg, CASE_ID, mlflow_dir)
    second = train_and_register(training, model_cfg, CASE_ID, mlflow_dir)
    return Registry(mlflow_dir, first, second)


@pytest.fixture(scope="module")
def champion(registry: Registry, model_cfg: ModelConfig) -> ChampionModel:
    return load_champion(model_cfg.name, registry.mlflow_dir)


@pytest.fixture(scope="module")
def scored(champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig) -> pl.DataFrame:
    return score_frame(champion, training, model_cfg, CASE_ID)


# --- the scorecard itself ------------------------------------------------------------------


def test_contributions_sum_exactly_to_the_logit(
    training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    train, _ = split_by_time(training, model_cfg)
    pipeline = fit_scorecard(train.select(model_cfg.features), train["label"].to_numpy())
    # Nulls and an infinite ratio must go through the same imputation as in the pipeline.
    probe = training.with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0)
        .then(None)
        .otherwise(pl.col("debt_to_income"))
        .alias("debt_to_income"),
        pl.when(pl.int_range(pl.len()) % 11 == 0)
        .then(float("inf"))
        .otherwise(pl.col("loan_to_income"))
        .alias("loan_to_income"),
    )
    contrib, base = contributions(pipeline, probe)
    logit = pipeline.decision_function(feature_frame(probe, model_cfg.features))
    assert contrib.shape == (probe.height, len(model_cfg.features))
    np.testing.assert_allclose(contrib.sum(axis=1) + base, logit, rtol=0, atol=1e-9)


def test_contributions_are_relative_to_the_average_training_case(
    training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    train, _ = split_by_time(training, model_cfg)
    pipeline = fit_scorecard(train.select(model_cfg.features), train["label"].to_numpy())
    contrib, _ = contributions(pipeline, train)
    np.testing.assert_allclose(contrib.mean(axis=0), 0.0, atol=1e-12)


def test_unweighted_fit_keeps_pd_calibrated_to_the_bad_rate(
    training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    """Why class_weight stays unset: the mean PD must match the observed bad rate."""
    train, _ = split_by_time(training, model_cfg)
    y = train["label"].cast(pl.Int8).to_numpy()
    pipeline = fit_scorecard(train.select(model_cfg.features), y)
    pd_ = pipeline.predict_proba(feature_frame(train, model_cfg.features))[:, 1]
    assert abs(pd_.mean() - y.mean()) < 1e-3


def test_points_scale_is_600_at_even_odds_and_20_to_double() -> None:
    assert points(np.array([0.5, 1 / 3, 1 / 5])).tolist() == [600.0, 620.0, 640.0]
    assert np.isfinite(points(np.array([0.0, 1.0]))).all()


def test_bands_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        band_index(np.array([0.1]), {"A": 0.2, "B": 0.1})


def test_training_needs_both_sides_of_the_time_split(
    training: pl.DataFrame, model_cfg: ModelConfig, tmp_path: Path
) -> None:
    late = model_cfg.model_copy(update={"validation_from": date(2019, 1, 1)})
    with pytest.raises(ValueError, match="non-empty"):
        train_and_register(training, late, CASE_ID, tmp_path / "mlflow")


# --- the registry ----------------------------------------------------------------------------


def test_tracking_store_lives_in_the_given_folder(registry: Registry) -> None:
    assert tracking_uri(registry.mlflow_dir).startswith("sqlite:///")
    assert (registry.mlflow_dir / "mlflow.db").is_file()
    assert any((registry.mlflow_dir / "artifacts").rglob("model.skops"))


def test_first_training_becomes_champion(
    registry: Registry, champion: ChampionModel, model_cfg: ModelConfig
) -> None:
    assert registry.first.promoted_to_champion
    assert (registry.first.name, registry.first.version) == (model_cfg.name, "1")
    assert champion.version == "1"
    assert champion.run_id == registry.first.run_id
    assert champion.model_uri == f"models:/{model_cfg.name}/1"
    assert len(champion.artifact_digest) == 64


def test_second_training_does_not_move_champion(registry: Registry, model_cfg: ModelConfig) -> None:
    assert registry.second.version == "2"
    assert not registry.second.promoted_to_champion
    client = configure(registry.mlflow_dir)
    assert str(client.get_model_version_by_alias(model_cfg.name, "champion").version) == "1"


def test_promote_moves_champion(
    registry: Registry, champion: ChampionModel, model_cfg: ModelConfig
) -> None:
    try:
        promote(model_cfg.name, registry.second.version, registry.mlflow_dir)
        promoted = load_champion(model_cfg.name, registry.mlflow_dir)
        assert (promoted.version, promoted.run_id) == ("2", registry.second.run_id)
        assert promoted.artifact_digest != champion.artifact_digest
    finally:
        promote(model_cfg.name, registry.first.version, registry.mlflow_dir)
    assert load_champion(model_cfg.name, registry.mlflow_dir).artifact_digest == (
        champion.artifact_digest
    )


def test_training_logs_metrics_calibration_and_model_card(
    registry: Registry, model_cfg: ModelConfig
) -> None:
    client = configure(registry.mlflow_dir)
    run = client.get_run(registry.first.run_id)
    for split in ("train", "validation"):
        for metric in ("auc", "ks", "brier"):
            assert (
                run.data.metrics[f"{split}_{metric}"] == registry.first.metrics[f"{split}_{metric}"]
            )
    assert 0.5 < registry.first.metrics["validation_auc"] <= 1.0
    kept = run.data.params["features"].split(",")
    dropped = run.data.params["dropped_for_sign"]
    assert kept and set(kept) <= set(model_cfg.features)
    assert set(kept) | (set(dropped.split(",")) - {"none"}) == set(model_cfg.features)
    logged = {a.path for a in client.list_artifacts(registry.first.run_id)}
    assert {"calibration.csv", "model_card.md"} <= logged
    card = Path(client.download_artifacts(registry.first.run_id, "model_card.md")).read_text()
    assert f"{model_cfg.name} v1" in card


def test_registry_round_trip_is_faithful(
    champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    train, _ = split_by_time(training, model_cfg)
    kept = model_features(champion.pipeline)
    refit = fit_scorecard(train.select(kept), train["label"].to_numpy())
    frame = feature_frame(training, kept)
    served = np.asarray(champion.pyfunc.predict(frame))
    np.testing.assert_array_equal(served, champion.pipeline.predict_proba(frame))
    np.testing.assert_allclose(served, refit.predict_proba(frame), rtol=1e-12, atol=0)


# --- scoring ---------------------------------------------------------------------------------


def test_score_frame_shape_types_and_ranges(
    scored: pl.DataFrame, champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    assert scored[CASE_ID].to_list() == training[CASE_ID].to_list()
    # Order matters too: downstream tables are written column by column.
    assert list(scored.schema.items()) == list(
        {
            CASE_ID: pl.String,
            "pd": pl.Float64,
            "pd_calibrated": pl.Float64,
            "score": pl.Int64,
            "risk_band": pl.String,
            "reason_codes": pl.List(pl.String),
            "reason_texts": pl.List(pl.String),
            "model_name": pl.String,
            "model_version": pl.String,
            "model_run_id": pl.String,
            "model_artifact_digest": pl.String,
        }.items()
    )
    assert scored["pd"].is_between(0.0, 1.0, closed="none").all()
    lowest, highest = points(np.array([1.0, 0.0]))
    assert scored["score"].is_between(lowest, highest).all()
    assert set(scored["risk_band"].unique()) <= set(model_cfg.bands)
    identity = scored.select(
        "model_name", "model_version", "model_run_id", "model_artifact_digest"
    ).unique()
    assert identity.rows() == [
        (champion.name, champion.version, champion.run_id, champion.artifact_digest)
    ]
    expected_score = 600 + 20 / math.log(2) * np.log((1 - scored["pd"]) / scored["pd"])
    assert (np.abs(scored["score"].to_numpy() - expected_score) <= 0.5).all()


def test_bands_and_scores_are_monotone_in_pd(scored: pl.DataFrame, model_cfg: ModelConfig) -> None:
    rank = {band: i for i, band in enumerate(model_cfg.bands)}
    ordered = scored.sort("pd")
    band_rank = np.array([rank[b] for b in ordered["risk_band"]])
    assert (np.diff(band_rank) >= 0).all()
    assert (np.diff(ordered["score"].to_numpy()) <= 0).all()
    uppers = list(model_cfg.bands.values())
    for pd_, band in ordered.select("pd", "risk_band").iter_rows():
        i = rank[band]
        assert i == len(uppers) - 1 or pd_ <= uppers[i]
        assert i == 0 or pd_ > uppers[i - 1]


def test_reason_codes_are_the_largest_positive_contributions(
    scored: pl.DataFrame, champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    contrib, _ = contributions(champion.pipeline, training)
    names = model_features(champion.pipeline)
    code_of = {f: rc.code for f, rc in model_cfg.reason_codes.items()}
    text_of = {rc.code: rc.text for rc in model_cfg.reason_codes.values()}
    assert (scored["reason_codes"].list.len() <= 4).all()
    for i, (codes, texts) in enumerate(scored.select("reason_codes", "reason_texts").iter_rows()):
        positive = sorted(
            ((c, f) for c, f in zip(contrib[i], names, strict=True) if c > 0 and f in code_of),
            reverse=True,
        )
        assert codes == [code_of[f] for _, f in positive[:4]]
        assert texts == [text_of[c] for c in codes]


def test_score_frame_of_no_rows_keeps_the_schema(
    champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig, scored: pl.DataFrame
) -> None:
    from models.scoring import SCORE_SCHEMA

    empty = score_frame(champion, training.head(0), model_cfg, CASE_ID)
    assert empty.height == 0
    assert empty.schema == scored.schema
    # `hitl domain check` validates policies against SCORE_SCHEMA: it must be what scoring adds.
    assert dict(scored.schema) == {CASE_ID: pl.String(), **SCORE_SCHEMA}


def test_sign_constraint_drops_features_that_contradict_their_reason_text() -> None:
    """A feature whose fitted effect runs against its declared risk direction is removed."""
    from models.scorecard import fit_sign_constrained, model_features

    rng = np.random.default_rng(7)
    n = 4000
    risk = rng.normal(size=n)
    protective = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-2 + 1.5 * risk - 1.0 * protective)))).astype(int)
    X = pl.DataFrame({"risk": risk, "protective": protective})

    # Declared correctly: both kept, with the declared signs.
    pipeline, dropped = fit_sign_constrained(X, y, {"risk": 1, "protective": -1})
    assert dropped == [] and model_features(pipeline) == ["risk", "protective"]

    # Declared wrongly for "protective": it must go, and the remaining model is consistent.
    pipeline, dropped = fit_sign_constrained(X, y, {"risk": 1, "protective": 1})
    assert dropped == ["protective"]
    assert model_features(pipeline) == ["risk"]
    assert pipeline.named_steps["logit"].coef_[0][0] > 0


# --- calibration, drift and governance -------------------------------------------------------


def test_platt_calibration_matches_the_validation_bad_rate(
    champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    """At its maximum-likelihood fit, the calibrated PD averages to the observed bad rate."""
    _, validation = split_by_time(training, model_cfg)
    scored = score_frame(champion, validation, model_cfg, CASE_ID)
    bad_rate = float(validation["label"].cast(pl.Float64).mean())
    assert champion.calibration.slope > 0
    assert abs(float(scored["pd_calibrated"].mean()) - bad_rate) < 1e-4
    # Monotone map: the ranking, hence every band order and reason, is the model's own.
    order = np.argsort(scored["pd"].to_numpy(), kind="stable")
    assert (np.diff(scored["pd_calibrated"].to_numpy()[order]) >= 0).all()


def test_calibrated_logit_keeps_the_exact_decomposition(
    champion: ChampionModel, scored: pl.DataFrame, training: pl.DataFrame
) -> None:
    from models.calibration import logit

    contrib, base = contributions(champion.pipeline, training)
    cal = champion.calibration
    rebuilt = cal.slope * (base + contrib.sum(axis=1)) + cal.intercept
    np.testing.assert_allclose(rebuilt, logit(scored["pd_calibrated"].to_numpy()), atol=1e-8)


def test_psi_is_zero_on_training_and_large_on_a_shifted_population(
    champion: ChampionModel, training: pl.DataFrame, model_cfg: ModelConfig
) -> None:
    from models.drift import psi

    reference = pl.DataFrame(list(champion.reference_bins))
    assert reference.height >= 5
    assert abs(float(reference["share"].sum()) - 1.0) < 1e-12
    train, _ = split_by_time(training, model_cfg)
    pd_train = champion.predict_pd(train)
    assert psi(pd_train, reference) < 1e-9
    riskier = train.with_columns(pl.col("interest_rate") * 1.8)
    assert psi(champion.predict_pd(riskier), reference) > 0.25


@pytest.mark.slow  # signs with ssh-keygen
def test_promotion_is_recorded_and_governed(
    registry: Registry, model_cfg: ModelConfig, tmp_path: Path
) -> None:
    from hitl_gate.core.database import audit_connection, query_frame
    from models.registry import PromotionError, list_versions

    audit_db = tmp_path / "audit.duckdb"
    keys = keyring(tmp_path)
    staff_model_owners(audit_db, keys)
    kw = {"mlflow_dir": registry.mlflow_dir, "audit_db": audit_db}
    with pytest.raises(PromotionError, match="admin .* does not hold model_owner"):
        signed_promote(keys, "admin", model_cfg.name, "2", alias="champion", **kw)
    with pytest.raises(PromotionError, match="no version 99"):
        signed_promote(keys, "alice", model_cfg.name, "99", alias="champion", **kw)
    with pytest.raises(PromotionError, match="alias"):
        signed_promote(keys, "alice", model_cfg.name, "2", alias="prod", **kw)
    with pytest.raises(PromotionError, match="cannot be removed"):
        signed_promote(keys, "alice", model_cfg.name, None, alias="champion", **kw)
    try:
        moved = signed_promote(
            keys, "alice", model_cfg.name, "2", alias="champion", reason="test", **kw
        )
        assert (moved.from_version, moved.to_version) == ("1", "2")
        assert load_champion(model_cfg.name, registry.mlflow_dir).version == "2"
        listed = list_versions(model_cfg.name, registry.mlflow_dir)
        assert listed.filter(pl.col("aliases") == "champion")["version"].to_list() == ["2"]
    finally:
        signed_promote(keys, "bob", model_cfg.name, "1", alias="champion", **kw)
    with audit_connection(audit_db, read_only=True) as con:
        rows = query_frame(
            con,
            "SELECT alias, from_version, to_version, promoted_by, signer_fingerprint "
            "FROM model_promotions ORDER BY promoted_at",
        )
    assert rows.rows() == [
        ("champion", "1", "2", "alice", keys.fingerprint("alice")),
        ("champion", "2", "1", "bob", keys.fingerprint("bob")),
    ]


def test_gradient_boosted_challenger_is_shadow_only(
    registry: Registry, training: pl.DataFrame, model_cfg: ModelConfig, tmp_path: Path
) -> None:
    from models.registry import GRADIENT_BOOSTING, PromotionError
    from models.scoring import compare_shadow, shadow_frame

    audit_db = tmp_path / "audit.duckdb"
    keys = keyring(tmp_path)
    staff_model_owners(audit_db, keys)
    kw = {"mlflow_dir": registry.mlflow_dir, "audit_db": audit_db}
    trained = train_and_register(
        training, model_cfg, CASE_ID, registry.mlflow_dir, family=GRADIENT_BOOSTING
    )
    assert not trained.promoted_to_champion
    assert trained.metrics["validation_auc"] > 0.5
    with pytest.raises(PromotionError, match="without exact reason codes"):
        signed_promote(keys, "alice", model_cfg.name, trained.version, alias="champion", **kw)
    signed_promote(keys, "alice", model_cfg.name, trained.version, alias="challenger", **kw)
    try:
        challenger = load_champion(model_cfg.name, registry.mlflow_dir, alias="challenger")
        champion = load_champion(model_cfg.name, registry.mlflow_dir)
        assert (challenger.family, challenger.version) == (GRADIENT_BOOSTING, trained.version)
        scores = score_frame(champion, training, model_cfg, CASE_ID)
        shadow = shadow_frame(challenger, scores, training, model_cfg, CASE_ID)
        assert shadow.height == training.height
        assert (shadow["champion_pd"] == scores["pd"]).all()
        assert not (shadow["challenger_pd"] == shadow["champion_pd"]).all()
        stats = compare_shadow(shadow)
        assert 0.0 <= stats["band_agreement"] <= 1.0
        assert 0.3 < stats["rank_correlation"] <= 1.0
    finally:
        signed_promote(keys, "alice", model_cfg.name, None, alias="challenger", **kw)


@pytest.mark.slow  # signs with ssh-keygen
def test_an_alias_moved_outside_promote_is_refused_at_scoring(
    registry: Registry, model_cfg: ModelConfig, tmp_path: Path
) -> None:
    """An insider moves `champion` (then sets `challenger`) with MLflow's own client, as the
    MLflow UI does on the same tracking store: scoring refuses until the record agrees."""
    from datetime import UTC, datetime

    from mlflow import MlflowClient

    from hitl_gate.core.database import audit_connection
    from models.alias_audit import UnreviewedAliasMove, require_reviewed_aliases
    from models.champion_scoring import load_scorers
    from models.registry import record_promotion
    from models.training_run import first_champion_promotion

    audit_db = tmp_path / "audit.duckdb"
    record_promotion(audit_db, first_champion_promotion(registry.first, datetime.now(UTC)))
    keys = keyring(tmp_path)
    staff_model_owners(audit_db, keys)
    uri = tracking_uri(registry.mlflow_dir)
    insider = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, first, second = model_cfg.name, registry.first.version, registry.second.version

    def score_step() -> None:
        """What `risk_scores` does before scoring: resolve once, compare with the record."""
        scorers = load_scorers(name, registry.mlflow_dir)
        with audit_connection(audit_db) as con:
            require_reviewed_aliases(con, name, scorers.resolved())

    score_step()  # as recorded: the automatic first champion
    insider.set_registered_model_alias(name, "champion", second)
    try:
        with pytest.raises(
            UnreviewedAliasMove,
            match=rf"@champion resolves to v{second} in "
            rf"MLflow, but .* by auto:first-training .* set it to v{first}",
        ):
            score_step()
    finally:
        insider.set_registered_model_alias(name, "champion", first)
    score_step()  # put back where the record says: scoring goes on

    insider.set_registered_model_alias(name, "challenger", second)
    try:
        with pytest.raises(UnreviewedAliasMove, match="@challenger .* no promotion of it"):
            score_step()
    finally:
        insider.delete_registered_model_alias(name, "challenger")

    kw = {"mlflow_dir": registry.mlflow_dir, "audit_db": audit_db}
    signed_promote(keys, "alice", name, second, alias="champion", reason="reviewed", **kw)
    try:
        score_step()  # the audited path moves the alias and the record together
        insider.set_registered_model_alias(name, "champion", first)  # an unreviewed rollback
        with pytest.raises(UnreviewedAliasMove, match=rf"by alice .* set it to v{second}"):
            score_step()
    finally:
        signed_promote(keys, "bob", name, first, alias="champion", **kw)
    score_step()


def test_runs_versions_and_model_carry_their_descriptions(
    registry: Registry, model_cfg: ModelConfig
) -> None:
    """The MLflow UI shows, without opening an artefact: the experiment's purpose and kind
    (classic ML, not the GenAI view), the model's purpose and each version's model card."""
    from models.mlflow_store import (
        CLASSIC_ML,
        DESCRIPTION_TAG,
        KIND_TAG,
        domain_experiment,
        experiment_id,
    )

    client = configure(registry.mlflow_dir)
    run = client.get_run(registry.first.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"hitl-gate/{model_cfg.name}"
    assert experiment.tags[KIND_TAG] == CLASSIC_ML
    assert f"Training runs of `{model_cfg.name}`" in experiment.tags[DESCRIPTION_TAG]
    assert "hitl model promote" in client.get_registered_model(model_cfg.name).description
    for trained in (registry.first, registry.second):
        card = client.get_model_version(model_cfg.name, trained.version).description
        assert card.startswith(f"# Model card: {model_cfg.name} v{trained.version}")
        assert "| auc |" in card

    lending = domain_experiment("lending_club", "Funded loans.", "lending_club_pd")
    assert lending.name == "hitl-gate/lending_club" and "Funded loans." in lending.description

    # An existing experiment gets its description brought up to date, not a second experiment.
    first_id = experiment_id(client, registry.mlflow_dir, lending)
    newer = dataclasses.replace(lending, description="Reworded.")
    assert experiment_id(client, registry.mlflow_dir, newer) == first_id
    assert client.get_experiment(first_id).tags[DESCRIPTION_TAG] == "Reworded."

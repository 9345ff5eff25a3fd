"""The leakage gate: a planted decision copy or post-decision column is named and never
auto-promoted; an honest model passes; a person may promote a flagged version only explicitly."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hitl_gate.core.domain import LabelConfig, ModelConfig, ReasonCode
from hitl_gate.core.lawful import LeakageLimits
from models.leakage import (
    LEAKAGE_TAG,
    LeakageRefused,
    check_leakage,
    require_leakage_cleared,
    single_feature_auc,
)
from tests.lawful_fixtures import credit_history

HONEST = ["income", "debt_ratio"]


def _training(leaks: list[str], n: int = 800) -> pl.DataFrame:
    """Model-ready rows of the generated history: id, event time, features and the label."""
    raw = credit_history(n)
    start = datetime(2024, 1, 1)
    return raw.select(
        pl.col("loan_ref").alias("case_id"),
        pl.Series("event_timestamp", [start + timedelta(hours=6 * i) for i in range(n)]),
        *[pl.col(c).cast(pl.Float64) for c in [*HONEST, *leaks]],
        (pl.col("loan_outcome") == "default").cast(pl.Int8).alias("label"),
    )


def _model_cfg(features: list[str], name: str = "leaky_pd") -> ModelConfig:
    return ModelConfig(
        name=name,
        features=features,
        label=LabelConfig(column="loan_outcome", positive_values=["default"], description="x"),
        validation_from=date(2024, 5, 1),
        bands={"A": 0.1, "B": 0.3, "C": 1.0},
        reason_codes={
            f: ReasonCode(
                code=f"R{i:02d}", text=f, risk_direction="lower" if f == "income" else "higher"
            )
            for i, f in enumerate(features, start=1)
        },
    )


def test_single_feature_auc_is_orientation_free_and_sees_missingness() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 5)
    assert single_feature_auc(y * 10.0, y, 5) == 1.0
    assert single_feature_auc(-y * 10.0, y, 5) == 1.0, "a reversed copy leaks as much"
    only_for_bad = np.where(y == 1, np.nan, 3.0)
    assert single_feature_auc(only_for_bad, y, 5) == 1.0, "a column filled only for goods"
    assert single_feature_auc(y * 1.0, y, 50) is None, "too few of a class: not judged"
    assert single_feature_auc(np.zeros(len(y)), y, 5) is None


def test_planted_leaks_are_named_and_honest_features_pass() -> None:
    frame = _training(["action_taken", "monthly_spend"])
    y = frame["label"].to_numpy()
    check = check_leakage(
        frame, [*HONEST, "action_taken", "monthly_spend"], y, 0.8, LeakageLimits()
    )
    assert not check.passed
    assert set(check.flagged_features) == {"action_taken", "monthly_spend"}
    assert check.feature_aucs["action_taken"] == 1.0
    assert all(check.feature_aucs[f] < 0.75 for f in HONEST)
    assert "feature 'action_taken' alone has AUC 1.000 >= 0.9" in check.describe()
    honest = check_leakage(frame, HONEST, y, 0.7, LeakageLimits())
    assert honest.passed and honest.tag() == "passed"
    # The model's own AUC counts too, and the limits are the domain's to set.
    assert not check_leakage(frame, HONEST, y, 0.96, LeakageLimits()).passed
    strict = LeakageLimits(max_validation_auc=0.6, max_feature_auc=0.6)
    assert check_leakage(frame, HONEST, y, 0.7, strict).model_flagged


@pytest.mark.slow
def test_training_with_a_leak_registers_but_never_promotes(tmp_path: Path) -> None:
    from models.mlflow_store import configure
    from models.training import train_and_register

    mlflow_dir = tmp_path / "mlflow"
    leaky_cfg = _model_cfg([*HONEST, "action_taken"])
    leaky = train_and_register(_training(["action_taken"]), leaky_cfg, "case_id", mlflow_dir)
    assert not leaky.promoted_to_champion
    assert leaky.leakage is not None and leaky.leakage.flagged_features == ["action_taken"]
    client = configure(mlflow_dir)
    tag = client.get_model_version("leaky_pd", leaky.version).tags[LEAKAGE_TAG]
    assert tag.startswith("failed: ") and "action_taken" in tag
    assert "champion" not in client.get_registered_model("leaky_pd").aliases
    card = Path(client.download_artifacts(leaky.run_id, "model_card.md")).read_text()
    assert "## Leakage check" in card and "FAILED" in card and "action_taken" in card
    run = client.get_run(leaky.run_id)
    assert run.data.params["leakage_flagged"] == "action_taken"
    from models.summary import latest_version_summary

    summary = "\n".join(latest_version_summary("leaky_pd", mlflow_dir))
    assert "leaky_pd v1: validation AUC" in summary and "action_taken" in summary
    assert "champion: none; v1 was NOT promoted" in summary
    # A person can promote it only by saying so.
    with pytest.raises(LeakageRefused, match="action_taken"):
        require_leakage_cleared(client, "leaky_pd", leaky.version, override_reason=None)
    with pytest.raises(LeakageRefused):
        require_leakage_cleared(client, "leaky_pd", leaky.version, override_reason="  ")
    note = require_leakage_cleared(
        client, "leaky_pd", leaky.version, override_reason="action_taken is a pre-decision code"
    )
    assert note is not None and note.startswith("leakage check overridden: action_taken is")
    # `hitl model promote` applies the same gate before signing, and signs the override.
    import argparse

    from hitl_gate.app.cli.model import _leakage_cleared

    args = argparse.Namespace(
        home=str(tmp_path), domains_dir=None, name="leaky_pd", version=leaky.version,
        reason="quarterly refresh", override_leakage=None,
    )  # fmt: skip
    with pytest.raises(SystemExit, match="REFUSED: .*action_taken.*--override-leakage"):
        _leakage_cleared(args)
    args.override_leakage = "action_taken is recorded before the decision"
    reason = _leakage_cleared(args)
    assert reason is not None and reason.startswith("quarterly refresh; leakage check overridden")

    honest = train_and_register(
        _training([]), _model_cfg(HONEST, "honest_pd"), "case_id", mlflow_dir
    )
    assert honest.promoted_to_champion and honest.leakage is not None and honest.leakage.passed
    assert (
        require_leakage_cleared(client, "honest_pd", honest.version, override_reason=None) is None
    )
    assert "champion: v1 (this version)" in latest_version_summary("honest_pd", mlflow_dir)

"""The pure parts of a training run: the label, its rate, the first champion's audit record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, load_domain
from models.registry import AUTO_FIRST_CHAMPION, CHAMPION
from models.training import TrainedModel
from models.training_run import (
    first_champion_promotion,
    positive_rate,
    training_frame,
    with_label,
)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def test_the_label_is_one_for_declared_bad_outcomes(domain: DomainConfig) -> None:
    frame = pl.DataFrame({"loan_status": ["Charged Off", "Current", "In Grace Period", "Current"]})
    labelled = with_label(frame, domain)
    assert labelled["label"].dtype == pl.Int8
    assert labelled["label"].to_list() == [1, 0, 1, 0]
    assert positive_rate(labelled) == 0.5


def test_no_rows_have_a_zero_positive_rate() -> None:
    assert positive_rate(pl.DataFrame({"label": []}, schema={"label": pl.Int8})) == 0.0


def test_the_first_champion_is_recorded_as_automatic() -> None:
    now = datetime(2018, 4, 1, tzinfo=UTC)
    trained = TrainedModel("m", "1", "run", {}, promoted_to_champion=True)
    promotion = first_champion_promotion(trained, now)
    assert (promotion.model_name, promotion.alias, promotion.to_version) == ("m", CHAMPION, "1")
    assert promotion.from_version is None and promotion.promoted_by == AUTO_FIRST_CHAMPION
    assert promotion.promoted_at == now


def test_training_without_features_or_outcomes_refuses(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """Nothing is opened or trained: the message says where outcome files are expected."""
    with pytest.raises(ValueError, match="training needs materialised case_features") as error:
        training_frame(domain, tmp_path / "feast", tmp_path / "landing")
    assert str(tmp_path / "landing" / domain.outcomes_subdir) in str(error.value)
    assert not (tmp_path / "feast").exists()

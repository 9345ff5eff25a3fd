"""The case page's feature contributions: the scorecard's exact terms for the case, from the
model version its decision names; the term of an input masked for the viewer is hidden."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hitl_gate.app.portal.contributions import ContributionSource
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import DomainConfig, load_domain
from models.scorecard import (
    contributions_from_matrix,
    feature_frame,
    feature_matrix,
    fit_scorecard,
)
from models.scoring import ChampionModel
from tests.portal_fixtures import TestClient, WorldTemplates
from tests.review_fixtures import DAY

pytestmark = pytest.mark.slow  # fits a scikit-learn scorecard; the page test runs ssh-keygen


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _features(domain: DomainConfig, case_ids: list[str], seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {name: rng.gamma(2.0, 1.0, len(case_ids)) for name in domain.model.features}
    return pl.DataFrame({domain.case_id: case_ids, **columns})


@pytest.fixture(scope="module")
def champion(domain: DomainConfig) -> ChampionModel:
    """A real scorecard fitted on 400 generated cases, risk rising with the loan-to-income."""
    train = _features(domain, [f"T{i}" for i in range(400)], seed=1)
    ratio = train["loan_to_income"].to_numpy()
    label = (ratio + np.random.default_rng(2).normal(0, 0.5, train.height) > 2.5).astype(int)
    pipeline = fit_scorecard(train.select(domain.model.features), label)
    return ChampionModel(name=domain.model.name, version="7", run_id="run-7", model_uri="",
                         pyfunc=None, artifact_digest="", pipeline=pipeline)  # fmt: skip


class Loads:
    """A loader handing out the fitted champion, counting how often it is asked."""

    def __init__(self, champion: ChampionModel) -> None:
        self.champion, self.calls = champion, 0

    def __call__(self, name: str, mlflow_dir: Path, version: str) -> ChampionModel:
        self.calls += 1
        assert (name, version) == (self.champion.name, self.champion.version)
        return self.champion


def _store(warehouse: Path, domain: DomainConfig, cases: pl.DataFrame, day: date) -> None:
    folder = warehouse / domain.name / "case_features"
    folder.mkdir(parents=True, exist_ok=True)
    cases.write_parquet(folder / f"{day.isoformat()}.parquet")


def test_terms_are_the_scorecards_exact_split_largest_first(
    tmp_path: Path, domain: DomainConfig, champion: ChampionModel
) -> None:
    cases = _features(domain, ["C1", "C2"], seed=3)
    _store(tmp_path, domain, cases, date(2018, 1, 5))
    loads = Loads(champion)
    source = ContributionSource(tmp_path, tmp_path / "mlflow", loader=loads)
    terms = source.of_case(domain, "C2", date(2018, 1, 5), "7", masked=set())
    names = champion.features
    expected, base = contributions_from_matrix(
        champion.pipeline, feature_matrix(cases.filter(pl.col(domain.case_id) == "C2"), names)
    )
    by_name = {t.feature: t.logit for t in terms}
    assert set(by_name) == set(names)
    for i, name in enumerate(names):
        assert by_name[name] == pytest.approx(expected[0, i], abs=5e-4)
    magnitudes = [abs(t.logit) for t in terms if t.logit is not None]
    assert magnitudes == sorted(magnitudes, reverse=True)
    # Exact and additive: the terms and the base give the model's own log-odds.
    # Named columns, as scoring passes them: the pipeline was fitted on a named frame.
    pd_ = champion.pipeline.predict_proba(feature_frame(cases, names))[1, 1]
    assert base + sum(expected[0]) == pytest.approx(np.log(pd_ / (1 - pd_)), abs=1e-9)
    source.of_case(domain, "C1", date(2018, 1, 5), "7", masked=set())
    assert loads.calls == 1  # one load per version and process


def test_a_masked_input_shows_neither_its_value_nor_its_term(
    tmp_path: Path, domain: DomainConfig, champion: ChampionModel
) -> None:
    cases = _features(domain, ["C1"], seed=4)
    _store(tmp_path, domain, cases, date(2018, 1, 5))
    source = ContributionSource(tmp_path, tmp_path / "mlflow", loader=Loads(champion))
    terms = {
        t.feature: t
        for t in source.of_case(domain, "C1", date(2018, 1, 5), "7", masked={"loan_to_income"})
    }
    hidden = terms["loan_to_income"]
    assert hidden.logit is None and hidden.value == "hidden for your role"
    assert str(round(cases["loan_to_income"][0], 3))[:5] not in hidden.value
    assert terms["debt_to_income"].logit is not None


def test_no_stored_features_or_no_model_version_means_no_terms(
    tmp_path: Path, domain: DomainConfig, champion: ChampionModel
) -> None:
    source = ContributionSource(tmp_path, tmp_path / "mlflow", loader=Loads(champion))
    assert source.of_case(domain, "C1", date(2018, 1, 5), "7", masked=set()) == []
    _store(tmp_path, domain, _features(domain, ["C1"], seed=5), date(2018, 1, 5))
    assert source.of_case(domain, "C1", date(2018, 1, 5), "", masked=set()) == []
    assert source.of_case(domain, "C9", date(2018, 1, 5), "7", masked=set()) == []


def _case_page(client: TestClient, case_id: str) -> str:
    queue = client.get("/queue").text
    ref = queue.split(f">{case_id}</a>", 1)[0].rsplit('href="/case/', 1)[1].split('"', 1)[0]
    page = client.get(f"/case/{ref}")
    assert page.status_code == 200
    return page.text


def test_the_case_page_lists_the_terms_with_the_masked_ones_hidden(
    tmp_path: Path, portal_worlds: WorldTemplates, domain: DomainConfig, champion: ChampionModel
) -> None:
    world = portal_worlds.make(tmp_path)
    cases = _features(domain, ["APP-000", "APP-001"], seed=6)
    day = date.fromisoformat(str(DAY))
    _store(tmp_path / "warehouse", domain, cases, day)
    with audit_connection(world.ws.db) as con:
        con.execute("UPDATE decisions SET model_version = '7' WHERE domain = ?", [domain.name])
    source = ContributionSource(tmp_path / "warehouse", tmp_path / "mlflow", loader=Loads(champion))
    world.config = dataclasses.replace(world.config, contributions=source)
    world.enrol("analyst-7")
    world.ws.assign(world.batch("credit_analyst"), "analyst-7")
    page = _case_page(world.signed_in("analyst-7"), "APP-000")
    assert "Not available for this case" not in page
    terms = page.split("<h3>Feature contributions</h3>", 1)[1].split("</table>", 1)[0]
    row = terms.split("<th>loan_to_income</th>", 1)[1].split("</tr>", 1)[0]
    assert row.count("hidden for your role") == 2 and "+" not in row and "-0." not in row
    row = terms.split("<th>debt_to_income</th>", 1)[1].split("</tr>", 1)[0]
    assert "the risk" in row or "no effect" in row
    assert row.split("<td>")[2].startswith(("+", "-"))  # the signed term itself

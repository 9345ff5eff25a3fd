"""Model governance on the shared demo home: challenger training, shadow scoring, promotion
records, blocking checks and feature provenance in `hitl audit trace` (real Dagster, Feast,
MLflow and DuckDB).

The test leaves the champion untouched and removes the challenger alias at the end, so other
end-to-end tests see the demo's decisions unchanged.
"""

from __future__ import annotations

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from tests.signed_acts_fixtures import demo_signing_key

pytestmark = pytest.mark.e2e

MODEL = "consumer_credit_pd"
DAY = "2018-01-10"


def _decisions(paths: HitlPaths) -> list[tuple]:
    with audit_connection(paths.audit_db, read_only=True) as con:
        return query_frame(
            con,
            "SELECT case_id, model_version, pd, risk_band, route FROM decisions "
            "WHERE partition_date = ? ORDER BY case_id",
            [DAY],
        ).rows()


def test_demo_records_the_first_champion_and_its_training_distribution(
    demo_home: HitlPaths,
) -> None:
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        promotions = query_frame(
            con, "SELECT alias, from_version, to_version, promoted_by FROM model_promotions"
        )
        shares = scalar(
            con,
            "SELECT sum(share) FROM model_reference_bins "
            "WHERE model_name = 'consumer_credit_pd' AND model_version = '1'",
        )
    assert ("champion", None, "1", "auto:first-training") in promotions.rows()
    assert abs(float(shares) - 1.0) < 1e-9


def test_decisions_name_the_feature_service_of_their_model_version(demo_home: HitlPaths) -> None:
    """Scoring runs after the first champion exists, so every decision names `<model>_v<N>`."""
    from features.services import read_manifest
    from features.store import open_feature_store
    from hitl_gate.core.domain import load_domain

    with audit_connection(demo_home.audit_db, read_only=True) as con:
        used = query_frame(
            con,
            "SELECT DISTINCT feature_service, model_name, model_version FROM decisions "
            "WHERE feature_digest IS NOT NULL",
        )
    assert used.height >= 2, "both demo domains decided cases"
    models = {d.model.name: d for d in map(load_domain, ("consumer_credit", "lending_club"))}
    for service, model, version in used.rows():
        assert service == f"{model}_v{version}"
        feast_dir = demo_home.feast_dir
        assert any(r.service_name == service for r in read_manifest(feast_dir, models[model]))
        store = open_feature_store(models[model], feast_dir)
        tags = store.get_feature_service(service).tags
        assert (tags["model"], tags["model_version"]) == (model, version)


def test_challenger_is_scored_in_shadow_and_never_acted_on(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(demo_home.home)]
    before = _decisions(demo_home)
    assert before
    main([*home, "model", "train", "--family", "gradient_boosting"])
    main([*home, "model", "list"])
    listing = capsys.readouterr().out
    assert "gradient_boosting" in listing and "champion" in listing
    from models.registry import list_versions

    versions = list_versions(MODEL, demo_home.mlflow_dir)
    challenger = versions.filter(versions["family"] == "gradient_boosting")["version"][-1]
    owner = demo_signing_key(demo_home.home, "demo-model-owner")
    with pytest.raises(SystemExit, match="REFUSED: .* does not hold model_owner"):
        main([*home, "model", "promote", MODEL, challenger, "--alias", "challenger",
              *demo_signing_key(demo_home.home, "demo-policy-owner")])  # fmt: skip
    with pytest.raises(SystemExit, match="REFUSED: .* without exact reason codes"):
        main([*home, "model", "promote", MODEL, challenger, *owner])
    main([*home, "model", "promote", MODEL, challenger, "--alias", "challenger", *owner])
    try:
        main([*home, "run", "--partition", DAY])
        assert _decisions(demo_home) == before, "the challenger changed a decision"
        with audit_connection(demo_home.audit_db, read_only=True) as con:
            shadow = query_frame(
                con,
                "SELECT case_id, champion_pd, challenger_pd, challenger_version FROM shadow_scores "
                "WHERE partition_date = ? ORDER BY case_id",
                [DAY],
            )
        assert shadow["case_id"].to_list() == [row[0] for row in before]
        assert shadow["champion_pd"].to_list() == [row[2] for row in before]
        assert set(shadow["challenger_version"]) == {challenger}
        case_id = shadow["case_id"][0]
        capsys.readouterr()
        main([*home, "audit", "trace", case_id])
        trace = capsys.readouterr().out
        assert "digest matches" in trace, trace
        assert "loan_to_income" in trace
        assert f"Shadow (challenger v{challenger}, not acted on)" in trace
    finally:
        main([*home, "model", "retire-challenger", MODEL, *owner])
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        moves = query_frame(
            con,
            "SELECT alias, from_version, to_version, promoted_by FROM model_promotions "
            "WHERE alias = 'challenger' ORDER BY promoted_at",
        ).rows()
    assert moves[-2:] == [
        ("challenger", None, challenger, "demo-model-owner"),
        ("challenger", challenger, None, "demo-model-owner"),
    ]

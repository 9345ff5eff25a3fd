"""Onboarding a history with planted traps, without any `--outcome` flag: the leaks become
outcomes, protected attributes are declared and kept out of features, reasons and the review
context, text with several values is encoded, sentinel codes are read as missing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.app.cli import main
from hitl_gate.app.domain_check import check_domain
from hitl_gate.app.scaffold import ScaffoldOptions, scaffold_domain
from hitl_gate.app.scaffold_screen import (
    leak_reason,
    name_tokens,
    one_hot,
    protected_category,
    sentinel_codes,
)
from hitl_gate.core.domain import DomainConfig, load_domain_file
from hitl_gate.core.lawful import LeakageLimits
from hitl_gate.core.protected import protected_columns, tainted_columns
from tests.lawful_fixtures import credit_history, write_history

TRAPS = {"applicant_race", "applicant_sex", "applicant_age", "marital_status", "zip3"}
LEAKS = {"action_taken", "monthly_spend"}


@pytest.fixture
def scaffolded(tmp_path: Path) -> tuple[Path, DomainConfig]:
    options = ScaffoldOptions(
        name="loans_s",
        source=write_history(tmp_path),
        label="loan_outcome",
        positive=["default"],
        start=date(2024, 1, 1),
        days=120,
    )
    made = scaffold_domain(options, root=tmp_path / "root")
    return made.domain_file, load_domain_file(made.domain_file)


def test_name_and_value_screens() -> None:
    assert name_tokens("applicantRace_1") == ["applicant", "race"]
    values = pl.Series(["x"] * 3)
    assert protected_category("derived_msa_md_age", values) is not None
    assert protected_category("age_of_oldest_account", values) is None, "not a person's age"
    assert protected_category("mortgage_balance", values) is None
    assert protected_category("product_age_months", values) is None
    assert protected_category("co_applicant_date_of_birth", values)[0] == "age"
    assert protected_category("country_of_birth", values)[0] == "national_origin"
    assert protected_category("personal_status", pl.Series(["male : single", "female : div"]))[
        0
    ] == "sex"  # fmt: skip
    assert protected_category("group", pl.Series(["White", "Black or African American"]))[0] == (
        "race"
    )
    assert protected_category("segment", pl.Series(["retail", "business"])) is None
    assert protected_category("grade", pl.Series(["M", "A", "B"])) is None, "one letter is not sex"


def test_sentinels_stand_apart_and_percentages_do_not() -> None:
    scores = pl.Series([300 + i % 550 for i in range(1000)] + [999] * 30)
    assert sentinel_codes(scores) == [999.0]
    percent = pl.Series([float(i % 101) for i in range(1000)])
    assert sentinel_codes(percent) == [], "99 inside 0-100 is a value, not a code"
    counts = pl.Series([float(i % 11) for i in range(1000)] + [-1.0] * 30)
    assert sentinel_codes(counts) == [], "-1 next to 0-10 does not stand apart"


def test_leaks_by_name_and_by_values() -> None:
    history = credit_history()
    label = (history["loan_outcome"] == "default").cast(pl.Int8)
    limits = LeakageLimits()
    assert "name says" in (
        leak_reason("action_taken", history["action_taken"], label, limits) or ""
    )
    spend = leak_reason("monthly_spend", history["monthly_spend"], label, limits)
    assert spend is not None and "AUC" in spend
    for honest in ("income", "debt_ratio", "employment_type", "bureau_score"):
        assert leak_reason(honest, history[honest], label, limits) is None, honest
    copied = pl.Series(["yes" if b else "no" for b in label])
    assert leak_reason("flag", copied, label, limits) is not None, "text copies leak too"


def test_one_hot_keeps_the_frequent_levels_and_skips_free_text() -> None:
    levels = pl.Series(["a"] * 10 + ["b"] * 6 + ["c"] * 5 + ["rare"] * 2)
    assert list(one_hot("kind", levels)) == ["kind_is_b", "kind_is_c"]
    assert one_hot("title", pl.Series([f"job {i % 40}" for i in range(400)])) == {}


def test_onboarding_without_outcome_flags_keeps_traps_out(
    scaffolded: tuple[Path, DomainConfig],
) -> None:
    domain_file, domain = scaffolded
    assert check_domain("loans_s", [domain_file.parent.parent]) == []
    assert domain.sample is not None and set(domain.sample.outcome_columns) >= LEAKS
    assert not LEAKS & set(domain.contract.columns), "leaks never land as inputs"
    declared = domain.protected_attributes
    assert set(protected_columns(domain)) == TRAPS
    assert declared["applicant_race"].category == "race"
    assert declared["applicant_race"].reference == "White"
    assert declared["applicant_race"].proxies == ["zip3"]
    assert declared["applicant_sex"].reference == "Male"
    assert declared["applicant_age"].bins == [25.0, 62.0]
    assert declared["marital_status"].category == "marital_status"
    tainted = tainted_columns(domain)
    assert not tainted & set(domain.model.features)
    assert not tainted & set(domain.model.reason_codes)
    assert not TRAPS & set(domain.review.context_columns), "reviewers do not see them"
    features = set(domain.model.features)
    assert {"employment_type_is_unemployed"} <= features, "a text predictor is encoded"
    assert "bureau_score_known" in domain.features.derived
    assert "999" in domain.features.derived["bureau_score_known"]
    assert "sentinel" in domain.contract.columns["bureau_score"].description
    text = domain_file.read_text(encoding="utf-8")
    assert "# Screening: outcome, not input: action_taken (its name says decision" in text
    assert "# Screening: protected (race): applicant_race, proxies ['zip3']" in text
    reasons = {r.text for r in domain.model.reason_codes.values()}
    assert "Employment type is unemployed" in reasons


def test_init_prints_what_screening_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["domain", "init", "loans_t", "--from", str(write_history(tmp_path)), "--label",
          "loan_outcome", "--positive", "default", "--root", str(tmp_path / "root")])  # fmt: skip
    out = capsys.readouterr().out
    assert "outcome, not input: monthly_spend (alone it predicts the label with AUC" in out
    assert "protected (age): applicant_age" in out


@pytest.mark.slow
def test_the_scaffolded_model_trains_and_is_promoted_without_traps(
    tmp_path: Path, scaffolded: tuple[Path, DomainConfig]
) -> None:
    """The features the scaffold chose pass the leakage gate; the leaks alone would not."""
    from features.engineering import derived_expressions
    from models.training import train_and_register

    _, domain = scaffolded
    raw = credit_history()
    start = datetime(2024, 1, 1)
    frame = raw.select(
        pl.col("loan_ref").alias("case_id"),
        pl.Series(
            "event_timestamp", [start + timedelta(days=i * 120 // raw.height) for i in range(800)]
        ),
        *[pl.col(c).cast(pl.Float64) for c in domain.features.passthrough],
        *derived_expressions(domain, raw.columns),
        (pl.col("loan_outcome") == "default").cast(pl.Int8).alias("label"),
    )
    trained = train_and_register(frame, domain.model, "case_id", tmp_path / "mlflow")
    assert trained.leakage is not None and trained.leakage.passed, trained.leakage
    assert trained.promoted_to_champion
    assert 0.6 < trained.metrics["validation_auc"] < 0.95


def test_protected_columns_are_masked_from_reviewers_unless_granted(
    scaffolded: tuple[Path, DomainConfig],
) -> None:
    import yaml

    from hitl_gate.review.export.masking import apply_masking
    from hitl_gate.review.settings import review_settings

    domain_file, domain = scaffolded
    settings = review_settings(domain)
    assert settings is not None
    cases = credit_history(5).rename({"loan_ref": "case_id"})
    for role in settings.roles:
        rules = settings.masking_for(role)
        masked, dropped = apply_masking(cases, rules, b"k" * 32, domain=domain.name)
        assert set(dropped) == TRAPS and not TRAPS & set(masked.columns), role

    def edit(path: Path, change) -> None:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    extra = [domain_file.parent.parent]
    # An owner who shows race to reviewers: fine while every role masks it...
    edit(domain_file, lambda d: d["review"]["context_columns"].append("applicant_race"))
    assert check_domain("loans_s", extra) == []
    # ...a failure once a role would see it by default...
    review_file = domain_file.with_name("review.yaml")
    edit(review_file, lambda r: r["masking"]["supervisor"].pop("applicant_race"))
    problems = check_domain("loans_s", extra)
    assert len(problems) == 1 and "to role 'supervisor'" in problems[0]
    assert "['applicant_race']" in problems[0]
    # ...and valid again when the role is granted it explicitly.
    edit(
        review_file, lambda r: r["masking"]["supervisor"].update(applicant_race={"method": "show"})
    )
    assert check_domain("loans_s", extra) == []


def test_review_share_places_the_bands_on_the_validation_rows(tmp_path: Path) -> None:
    import numpy as np

    from hitl_gate.app.scaffold_bands import bands_for_review_share
    from models.scoring import band_index

    pds = np.linspace(0.001, 0.5, 1000)
    plan = bands_for_review_share(pds, 0.15, 0.3)
    assert plan.bands["D"] == 0.3 and plan.bands["E"] == 1.0
    index = band_index(pds, plan.bands)
    assert np.mean((index == 2) | (index == 3)) == pytest.approx(0.15, abs=0.01)
    assert plan.review == pytest.approx(0.15, abs=0.01)
    with pytest.raises(ValueError, match="between 0 and 1"):
        bands_for_review_share(pds, 1.5, 0.3)

    options = ScaffoldOptions(
        name="loans_r", source=write_history(tmp_path), label="loan_outcome",
        positive=["default"], review_share=0.15,
    )  # fmt: skip
    made = scaffold_domain(options, root=tmp_path / "root")
    assert any("review share of 1" in n for n in made.notes), made.notes
    domain = load_domain_file(made.domain_file)
    bounds = list(domain.model.bands.values())
    assert bounds == sorted(bounds) and bounds[-1] == 1.0 and len(bounds) == 5
    assert check_domain("loans_r", [made.domain_file.parent.parent]) == []


def test_a_mortgage_register_without_outcome_flags(tmp_path: Path) -> None:
    """The issue's case: decision copies and race columns, `hitl domain init` told only the
    label. No copy of the decision and no protected column ends up a feature."""
    from tests.lawful_fixtures import mortgage_history

    source = tmp_path / "register.parquet"
    mortgage_history().write_parquet(source)
    options = ScaffoldOptions(
        name="mortgage", source=source, label="action_taken", positive=["3"], review_share=0.15
    )
    made = scaffold_domain(options, root=tmp_path / "root")
    domain = load_domain_file(made.domain_file)
    assert check_domain("mortgage", [made.domain_file.parent.parent]) == []
    copies = {"denial_reason-1", "interest_rate", "rate_spread"}
    assert domain.sample is not None and copies <= set(domain.sample.outcome_columns)
    protected = set(protected_columns(domain))
    assert {
        "derived_race", "derived_ethnicity", "derived_sex", "applicant_race-1", "applicant_sex",
        "applicant_age", "census_tract",
    } <= protected  # fmt: skip
    assert domain.protected_attributes["applicant_race-1"].category == "race"
    assert domain.protected_attributes["derived_race"].reference == "White"
    assert not tainted_columns(domain) & set(domain.model.features)
    used = " ".join([*domain.features.passthrough, *domain.features.derived.values()])
    assert not any(c in used for c in protected | copies)
    assert "debt_to_income_ratio_is_lt_20" in domain.features.derived, "text bins are encoded"


@pytest.mark.slow
def test_the_mortgage_register_ends_with_no_leaking_champion(tmp_path: Path) -> None:
    """The done-when end to end on the HMDA-shaped register (no public data set can be fetched
    here): onboarded without `--outcome`, trained, the champion is not leaking and uses no
    protected column; the same model given a decision copy is refused promotion, by name."""
    from features.engineering import derived_expressions
    from models.training import train_and_register
    from tests.lawful_fixtures import mortgage_history

    raw = mortgage_history()
    source = tmp_path / "register.parquet"
    raw.write_parquet(source)
    options = ScaffoldOptions(name="mortgage", source=source, label="action_taken", positive=["3"])
    domain = load_domain_file(scaffold_domain(options, root=tmp_path / "root").domain_file)
    assert not tainted_columns(domain) & set(domain.model.features)
    start = datetime(2024, 1, 1)

    def training(model, extra: list[str]) -> pl.DataFrame:
        return raw.with_row_index("case_id").select(
            pl.col("case_id").cast(pl.String),
            pl.Series("event_timestamp",
                      [start + timedelta(days=i * 120 // raw.height) for i in range(raw.height)]),
            *[pl.col(c).cast(pl.Float64) for c in [*domain.features.passthrough, *extra]],
            *derived_expressions(domain, raw.columns),
            (pl.col("action_taken") == 3).cast(pl.Int8).alias("label"),
        )  # fmt: skip

    trained = train_and_register(training(domain.model, []), domain.model, "case_id",
                                 tmp_path / "mlflow")  # fmt: skip
    assert trained.leakage is not None and trained.leakage.passed, trained.leakage
    assert trained.promoted_to_champion and trained.metrics["validation_auc"] < 0.95
    # An owner who puts the denial reason back among the features: never promoted alone.
    copy = "denial_reason-1"
    reasons = {**domain.model.reason_codes, copy: next(iter(domain.model.reason_codes.values()))
               .model_copy(update={"code": "Z98"})}  # fmt: skip
    leaking = domain.model.model_copy(
        update={"features": [*domain.model.features, copy], "reason_codes": reasons,
                "name": "mortgage_leaking"}
    )  # fmt: skip
    refused = train_and_register(training(leaking, [copy]), leaking, "case_id",
                                 tmp_path / "mlflow")  # fmt: skip
    assert refused.leakage is not None and not refused.leakage.passed
    assert not refused.promoted_to_champion
    assert copy in str(refused.leakage)

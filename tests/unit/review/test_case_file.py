"""The case file: what a reviewer is shown about one case, on small frames of the real domains."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.review.case_file import (
    HIDDEN,
    PolicyNotes,
    band_limits,
    build_case_file,
    evidence_columns,
    format_value,
    policy_notes,
)
from hitl_gate.review.export.masking import apply_masking, mask_derived
from hitl_gate.review.settings import MaskRule
from policies.model import load_policy

DOMAINS = ["consumer_credit", "lending_club"]


@pytest.fixture(scope="module")
def credit() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture(scope="module")
def notes(credit: DomainConfig) -> PolicyNotes:
    return policy_notes(load_policy(Path(credit.policy)))


def _case(**values: object) -> dict[str, object]:
    """A consumer-credit case row as routing stores it (the inputs a test does not set: None)."""
    base: dict[str, object] = {
        "application_id": "APP-1",
        "loan_amount": 20000.0,
        "annual_income": 30000.0,
        "loan_to_income": 0.6667,
        "interest_rate": 17.5,
        "emp_length": 1.0,
        "pd": 0.0342,
        "score": 640,
        "risk_band": "C",
        "route_reason_code": "H05",
        "rules_fired": ["REV-LOAN-TO-INCOME", "REV-BAND-C"],
        "reason_codes": ["R01", "R10", "R12"],
        "reason_texts": [
            "Amount requested is high relative to income",
            "Loan priced at a high-risk rate",
            "Short time in current employment",
        ],
        "four_eyes": False,
        "qa_sample": False,
    }
    return {**base, **values}


@pytest.mark.parametrize("name", DOMAINS)
def test_every_model_input_and_every_rule_column_is_evidence(name: str) -> None:
    domain = load_domain(name)
    notes = policy_notes(load_policy(Path(domain.policy)))
    shown = evidence_columns(domain, notes)
    assert set(domain.model.features) <= set(shown)
    read = {c for rule in notes.rules.values() for c in rule.columns} - {"pd", "risk_band"}
    assert read and read <= set(shown)
    assert "pd" not in shown and domain.case_id not in shown


def test_the_columns_the_issue_found_missing_are_shown(credit: DomainConfig, notes: PolicyNotes):
    assert {"interest_rate", "emp_length", "loan_to_income"} <= set(evidence_columns(credit, notes))


@pytest.mark.parametrize("name", DOMAINS)
def test_every_shipped_rule_has_plain_text_and_reads_columns(name: str) -> None:
    domain = load_domain(name)
    for path in sorted(Path(domain.policy).parent.glob("v*.yaml")):
        if path.name.endswith(".cases.yaml"):
            continue
        notes = policy_notes(load_policy(path))
        for rule in notes.rules.values():
            assert len(rule.text) > 20 and rule.columns, (path, rule.id)
        policy = load_policy(path)
        for code in [
            "QA",
            "HALT",
            policy.default_reason_code,
            *(r.reason_code for r in policy.rules),
        ]:
            assert notes.route_codes[code], (path, code)


def test_reasons_carry_code_text_and_the_value_behind_them(
    credit: DomainConfig, notes: PolicyNotes
) -> None:
    case = build_case_file(_case(), credit, notes)
    assert [r.line() for r in case.reasons] == [
        "R01: Amount requested is high relative to income [loan_to_income = 0.6667]",
        "R10: Loan priced at a high-risk rate [interest_rate = 17.5]",
        "R12: Short time in current employment [emp_length = 1]",
    ]
    assert case.no_reason_why is None
    assert case.reasons_text().splitlines()[0].startswith("R01: Amount requested")


def test_fired_rules_in_plain_text_with_what_they_read(
    credit: DomainConfig, notes: PolicyNotes
) -> None:
    case = build_case_file(_case(), credit, notes)
    assert case.rules_text().splitlines() == [
        "REV-LOAN-TO-INCOME: Amount requested is 60% of annual income or more. "
        "[loan_to_income = 0.6667]",
        "REV-BAND-C: Predicted risk is band C (moderate). [risk_band = C]",
    ]


def test_risk_signals(credit: DomainConfig, notes: PolicyNotes) -> None:
    signals = build_case_file(_case(four_eyes=True, qa_sample=None), credit, notes).signals
    assert signals.pd_percent == 3.42
    assert signals.band_limits == "PD over 2% up to 4%"
    assert signals.four_eyes and not signals.qa_sample
    assert signals.route_reason.startswith("REV-LOAN-TO-INCOME: Amount requested")
    assert band_limits(credit.model.bands) == {
        "A": "PD up to 1%",
        "B": "PD over 1% up to 2%",
        "C": "PD over 2% up to 4%",
        "D": "PD over 4% up to 8%",
        "E": "PD over 8%",
    }


def test_a_case_without_a_model_reason_says_why(credit: DomainConfig, notes: PolicyNotes):
    scored = build_case_file(
        _case(reason_codes=[], reason_texts=[], route_reason_code="QA", rules_fired=[]),
        credit,
        notes,
    )
    assert scored.reasons == ()
    text = scored.reasons_text()
    assert text.startswith("No model reason: no input raises")
    assert "Quality sample" in text and scored.rules_text() == "(no rule fired)"
    unscored = build_case_file(
        _case(pd=None, reason_codes=None, reason_texts=None, loan_to_income=None), credit, notes
    )
    assert unscored.signals.pd_percent is None
    assert "no score (missing: loan_to_income" in unscored.reasons_text()


def test_masked_values_show_as_their_band_and_dropped_ones_as_hidden(
    credit: DomainConfig, notes: PolicyNotes
) -> None:
    """Adversarial: a banded income never shows raw in a reason or rule, and a ratio computed
    from it (loan / income gives the income back) is hidden with it."""
    frame = pl.DataFrame([_case(annual_income=52371.0, loan_to_income=20000 / 52371.0)])
    rules = mask_derived(
        {"annual_income": MaskRule(method="generalise", bands=[50000, 75000])},
        credit.features.derived,
    )
    assert rules["loan_to_income"].method == "drop"
    masked, dropped = apply_masking(frame, rules, b"k" * 32, domain=credit.name)
    assert "loan_to_income" in dropped
    how = {c: r.method for c, r in rules.items()}
    case = build_case_file(masked.row(0, named=True), credit, notes, how)
    text = case.reasons_text() + case.rules_text() + str(case.evidence)
    assert "52371" not in text and "52,371" not in text and "0.3819" not in text
    assert f"[loan_to_income = {HIDDEN}]" in case.reasons_text()
    assert ("loan_to_income", HIDDEN) in case.evidence
    assert ("interest_rate", "17.5") in case.evidence
    assert masked["annual_income"].to_list() == ["50,000 - < 75,000"]
    shown = build_case_file({**_case(), "debt_to_income": "10 - < 20"}, credit, notes,
                            {"debt_to_income": "generalise"})  # fmt: skip
    assert ("debt_to_income", "10 - < 20 (band)") in shown.evidence


def test_a_derived_column_with_its_own_rule_keeps_it(credit: DomainConfig) -> None:
    own = MaskRule(method="generalise", bands=[0.2, 0.4, 0.6, 0.8])
    rules = mask_derived(
        {"annual_income": MaskRule(method="drop"), "loan_to_income": own}, credit.features.derived
    )
    assert rules["loan_to_income"] == own
    assert rules["installment_to_income"].method == "drop"
    assert "credit_utilization" not in rules  # reads no masked column


def test_a_derived_column_the_policy_parser_cannot_read_is_still_hidden() -> None:
    """Adversarial: feature SQL is DuckDB's; one Polars cannot parse still counts as reading."""
    derived = {"odd": "STRPOS('ABC', SUBSTR(annual_income::VARCHAR, 1, 1)) * 1"}
    assert mask_derived({"annual_income": MaskRule(method="suppress")}, derived)["odd"].method == (
        "drop"
    )
    assert "odd" not in mask_derived({"state": MaskRule(method="suppress")}, derived)


def test_suppressed_values_are_hidden_not_missing(credit: DomainConfig, notes: PolicyNotes):
    case = build_case_file(_case(interest_rate=None), credit, notes, {"interest_rate": "suppress"})
    assert f"[interest_rate = {HIDDEN}]" in case.reasons_text()


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "missing"), (float("nan"), "missing"), (35000.0, "35,000"), (0.123456, "0.1235"),
     (1234.5678, "1,234.57"), (True, "yes"), (7, "7"), ("RENT", "RENT")],
)  # fmt: skip
def test_values_read_as_a_person_reads_them(value: object, text: str) -> None:
    assert format_value(value) == text

"""Protected attributes: declared, never a feature, a policy input or an adverse-action reason."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.app.domain_check import check_domain
from hitl_gate.app.scaffold import ScaffoldOptions, scaffold_domain
from hitl_gate.core.domain import DomainConfigError, load_domain, load_domain_file
from hitl_gate.core.lawful import ProtectedAttribute
from hitl_gate.core.protected import (
    protected_columns,
    protected_reason_codes,
    tainted_features,
)
from hitl_gate.execution.adverse_action import adverse_actions
from tests.lawful_fixtures import write_history

PROTECTED = {
    "applicant_race": {"category": "race", "reference": "White", "proxies": ["zip3"]},
    "applicant_age": {"category": "age"},
}


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture
def domain_file(tmp_path: Path) -> Path:
    """A scaffolded domain over the generated history, leaks named as outcomes."""
    options = ScaffoldOptions(
        name="loans_p",
        source=write_history(tmp_path),
        label="loan_outcome",
        positive=["default"],
        outcomes=["action_taken", "monthly_spend"],
    )
    made = scaffold_domain(options, root=tmp_path / "root", force=True)
    return made.domain_file


def _check(domain_file: Path) -> str:
    return "\n".join(check_domain("loans_p", [domain_file.parent.parent]))


def _declare(data: dict) -> None:
    """Declare the protected attributes and drop any of them the scaffold made a feature."""
    data["protected_attributes"] = PROTECTED
    banned = {"applicant_race", "applicant_age", "zip3"}
    features, model = data["features"], data["model"]
    features["passthrough"] = [f for f in features["passthrough"] if f not in banned]
    features["derived"] = {
        k: v for k, v in features["derived"].items() if not any(b in v for b in banned)
    }
    kept = [*features["passthrough"], *features["derived"]]
    model["features"] = [f for f in model["features"] if f in kept]
    model["reason_codes"] = {k: v for k, v in model["reason_codes"].items() if k in kept}


def _use_protected_everywhere(data: dict) -> None:
    """What a careless owner writes: age as a feature, race in a derived one and a rule."""
    data["protected_attributes"] = PROTECTED
    features = data["features"]
    features["passthrough"] = [*features["passthrough"], "applicant_age"]
    features["derived"]["race_is_black"] = "CASE WHEN applicant_race = 'Black' THEN 1 ELSE 0 END"
    features["derived"]["zip_band"] = "CAST(zip3 AS INTEGER) / 100"
    model = data["model"]
    model["features"] = [*model["features"], "applicant_age", "race_is_black", "zip_band"]
    model["reason_codes"]["applicant_age"] = {"code": "R90", "text": "Age is high"}
    model["reason_codes"]["race_is_black"] = {"code": "R91", "text": "Black is high"}
    model["reason_codes"]["zip_band"] = {"code": "R92", "text": "Area"}


def test_declared_protected_attributes_load_and_name_their_columns(domain_file: Path) -> None:
    _edit(domain_file, lambda d: d.update(protected_attributes=PROTECTED))
    domain = load_domain_file(domain_file)
    assert domain.protected_attributes["applicant_race"] == ProtectedAttribute(
        category="race", reference="White", proxies=["zip3"]
    )
    # The review export's masking hides exactly these (attributes first, then proxies).
    assert protected_columns(domain) == ["applicant_race", "applicant_age", "zip3"]


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"applicant_racee": {"category": "race"}}, "not in the contract: \\['applicant_racee'\\]"),
        ({"applicant_race": {"category": "race", "proxies": ["zipp"]}}, "\\['zipp'\\]"),
        ({"applicant_race": {"category": "colour_of_car"}}, "category"),
    ],
)
def test_a_misspelt_declaration_is_refused(domain_file: Path, declared, message) -> None:
    _edit(domain_file, lambda d: d.update(protected_attributes=declared))
    with pytest.raises(DomainConfigError, match=message):
        load_domain_file(domain_file)


def test_check_fails_on_protected_features_reasons_and_rules(domain_file: Path) -> None:
    _edit(domain_file, _declare)
    assert _check(domain_file) == "", "declaring alone is valid"
    _edit(domain_file, _use_protected_everywhere)
    policy_file = domain_file.parents[2] / "policies" / "loans_p" / "v1.yaml"
    _edit(
        policy_file,
        lambda p: p["rules"][0].update(when="risk_band = 'E' OR race_is_black = 1"),
    )
    _edit(policy_file, lambda p: p["rules"][1].update(when="pd IS NULL OR applicant_age > 70"))
    problems = _check(domain_file)
    for feature in ("applicant_age", "race_is_black", "zip_band"):
        assert f"model.features '{feature}' uses a protected attribute" in problems
        assert f"model.reason_codes '{feature}'" in problems
    assert "(computed from ['applicant_race'])" in problems
    assert "(computed from ['zip3'])" in problems, "a declared proxy counts as the attribute"
    assert (
        "rule 'DEC-TOP-BAND' conditions on protected attributes or proxies ['race_is_black']"
        in (problems)
    )
    assert "rule 'REV-MISSING-SCORE' conditions on protected" in problems
    domain = load_domain_file(domain_file)
    assert set(tainted_features(domain)) == {"applicant_age", "race_is_black", "zip_band"}
    assert protected_reason_codes(domain) == {"R90", "R91", "R92"}


def test_without_the_declaration_nothing_is_protected(domain_file: Path) -> None:
    """The check is only as good as the declaration: nothing declared, nothing refused."""
    _edit(domain_file, lambda d: d.pop("protected_attributes", None))
    domain = load_domain_file(domain_file)
    assert protected_columns(domain) == [] and protected_reason_codes(domain) == set()


def test_adverse_action_never_cites_a_protected_attribute_or_proxy() -> None:
    shipped = load_domain("consumer_credit")
    # Declared as a proxy of age: employment length may no longer be a stated reason (R12).
    domain = shipped.model_copy(
        update={
            "protected_attributes": {
                "state": ProtectedAttribute(category="age", proxies=["emp_length"])
            }
        }
    )
    executed = pl.DataFrame(
        {
            "domain": ["c"] * 3,
            "case_id": ["a", "b", "c"],
            "partition_date": [None] * 3,
            "action": ["decline"] * 3,
            "decided_by": ["policy", "reviewer", "reviewer"],
            "reason_codes": [["R12", "R05", "R01", "R02", "R03"], ["R12"], ["R03"]],
            "verdict_reason_code": [None, "R12", "R12"],
            "route_reason_code": ["D02", "H01", None],
        }
    )
    notices = {
        r["case_id"]: r for r in adverse_actions(executed, domain, {"D02": "Rule"}).to_dicts()
    }
    assert notices["a"]["reason_codes"] == ["D02", "R05", "R01", "R02"], "order kept, R12 gone"
    assert notices["b"]["reason_codes"] == ["H01"], "falls back to the routing rule"
    assert notices["c"]["reason_codes"] == ["R03"], "a reviewer's protected reason is not stated"
    assert all("employment" not in text for n in notices.values() for text in n["reasons"])
    # The same cases under the shipped declaration do cite R12: the test can fail.
    plain = adverse_actions(executed, shipped, {"D02": "Rule"})
    assert "R12" in plain.filter(pl.col("case_id") == "b")["reason_codes"][0].to_list()


@pytest.mark.parametrize(("name", "column"), [("consumer_credit", "state"),
                                              ("lending_club", "addr_state")])  # fmt: skip
def test_shipped_domains_declare_their_geographic_proxy_and_check_enforces_it(
    name: str, column: str
) -> None:
    from hitl_gate.app.domain_check import protected_problems

    domain = load_domain(name)
    assert protected_columns(domain) == [column]
    assert domain.protected_attributes[column].category == "race"
    assert check_domain(name) == []
    # The check bites on the shipped declaration: the proxy as a feature, inside a derived
    # feature, as a reason code, or shown to every reviewer, is each a problem.
    features = domain.features.model_copy(
        update={
            "passthrough": [*domain.features.passthrough, column],
            "derived": {**domain.features.derived, "south": f"{column} IN ('TX', 'GA')"},
        }
    )
    reasons = {**domain.model.reason_codes, column: domain.model.reason_codes[
        domain.model.features[0]].model_copy(update={"code": "Z99"})}  # fmt: skip
    model = domain.model.model_copy(
        update={"features": [*domain.model.features, column, "south"], "reason_codes": reasons}
    )
    problems = "\n".join(
        protected_problems(domain.model_copy(update={"features": features, "model": model}), "x")
    )
    assert f"model.features '{column}' uses a protected attribute" in problems
    assert (
        f"model.features 'south' uses a protected attribute or proxy (computed from ['{column}'])"
        in problems
    )
    assert f"model.reason_codes '{column}' (Z99) would cite a protected attribute" in problems

"""Policy test cases: every shipped policy passes its own; failures name the case and rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.core.domain import available_domains, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.quality.case_schema import declared_case_schema
from policies.control import policy_files
from policies.testing import cases_path, check_policy_file
from tests.signed_acts_fixtures import staffed_home

SHIPPED = [(name, path) for name in available_domains() for path in policy_files(load_domain(name))]
CC = load_domain("consumer_credit")
SCHEMA = declared_case_schema(CC)


@pytest.mark.parametrize(("domain", "path"), SHIPPED, ids=[p.name for _, p in SHIPPED])
def test_every_shipped_policy_passes_its_test_cases(domain: str, path: Path) -> None:
    report = check_policy_file(path, declared_case_schema(load_domain(domain)))
    assert report.passed, "\n".join(report.failures)
    assert report.cases >= 10


def test_each_domain_ships_tested_policies() -> None:
    assert {d for d, _ in SHIPPED} >= {"consumer_credit", "lending_club"}
    assert all(cases_path(p).is_file() for _, p in SHIPPED)


def _copy_v1(tmp_path: Path) -> tuple[Path, dict]:
    policy = tmp_path / "v1.yaml"
    shutil.copy(CC.policy_path, policy)
    cases = yaml.safe_load(cases_path(CC.policy_path).read_text(encoding="utf-8"))
    return policy, cases


def _save(tmp_path: Path, cases: dict) -> None:
    (tmp_path / "v1.cases.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")


def test_a_wrong_expectation_names_the_case_the_field_and_the_deciding_rule(
    tmp_path: Path,
) -> None:
    policy, cases = _copy_v1(tmp_path)
    band_c = next(c for c in cases["cases"] if c["name"] == "band C goes to an analyst")
    band_c["expect"]["route"] = "auto_approve"
    _save(tmp_path, cases)
    report = check_policy_file(policy, SCHEMA)
    assert not report.passed and len(report.failures) == 1
    message = report.failures[0]
    assert "v1.cases.yaml: case 'band C goes to an analyst' (#17)" in message
    assert "route: expected 'auto_approve', got 'human_review'" in message
    assert "decided by rule 'REV-BAND-C', reason H08" in message


def test_a_changed_policy_fails_the_cases_it_breaks(tmp_path: Path) -> None:
    policy, cases = _copy_v1(tmp_path)
    _save(tmp_path, cases)
    text = policy.read_text(encoding="utf-8").replace("when: pd >= 0.05", "when: pd >= 0.07")
    policy.write_text(text, encoding="utf-8")
    failures = check_policy_file(policy, SCHEMA).failures
    assert any("pd exactly at the 5% cut-off is declined" in f for f in failures)
    assert any("rules fired ['REV-BAND-D']" in f for f in failures)


def test_input_problems_are_named_per_case(tmp_path: Path) -> None:
    policy, cases = _copy_v1(tmp_path)
    del cases["defaults"]["delinq_2y"]
    cases["cases"][0]["case"] = {"delinq_2y": 0, "risk_bnd": "A", "pd": "low"}
    cases["cases"][1]["expect"].pop("reason_code")
    _save(tmp_path, cases)
    failures = check_policy_file(policy, SCHEMA).failures
    joined = "\n".join(failures)
    assert (
        "case 'clean band B application is approved' (#2): expect is missing ['reason_code']"
        in joined
    )
    # Structural problems stop before routing; fix them and the column problems show.
    cases["cases"][1]["expect"]["reason_code"] = "A01"
    _save(tmp_path, cases)
    joined = "\n".join(check_policy_file(policy, SCHEMA).failures)
    assert "(#1): unknown column 'risk_bnd'" in joined
    assert "(#1): column 'pd' is Float64, got 'low'" in joined
    assert "(#2): no value for columns ['delinq_2y'] (write null for missing)" in joined


def test_missing_file_and_untested_rules_fail(tmp_path: Path) -> None:
    policy, cases = _copy_v1(tmp_path)
    assert check_policy_file(policy, SCHEMA).failures == [
        f"{tmp_path / 'v1.cases.yaml'}: no test file for this policy"
    ]
    cases["cases"] = [c for c in cases["cases"] if "REV-BAND-C" not in c["expect"]["rules_fired"]]
    _save(tmp_path, cases)
    failures = check_policy_file(policy, SCHEMA).failures
    assert failures == [
        f"{tmp_path / 'v1.cases.yaml'}: rules that fire in no case (add a case for each): "
        "['REV-BAND-C']"
    ]


def test_cli_test_and_activation_refuse_failing_or_untested_policies(
    hitl_paths: HitlPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(hitl_paths.home)]
    main([*home, "policy", "test"])
    assert "OK: 2 policy file(s) pass their tests" in capsys.readouterr().out
    policy, cases = _copy_v1(tmp_path)
    text = policy.read_text(encoding="utf-8").replace("consumer_credit-v1", "consumer_credit-v9")
    policy.write_text(text, encoding="utf-8")
    keys = staffed_home(hitl_paths.audit_db, tmp_path)
    activate = [*home, "policy", "activate", str(policy), "--signing-key",
                str(keys.private("ann")), "--approval-key", str(keys.private("bob"))]  # fmt: skip
    with pytest.raises(SystemExit, match="(?s)tests do not pass.*no test file for this policy"):
        main(activate)
    cases["cases"][0]["expect"]["reason_code"] = "A02"
    _save(tmp_path, cases)
    with pytest.raises(SystemExit, match=r"case 'clean band A application is approved' \(#1\)"):
        main([*home, "policy", "test", str(policy)])
    with pytest.raises(SystemExit, match="REFUSED: the policy's tests do not pass"):
        main(activate)
    cases["cases"][0]["expect"]["reason_code"] = "A01"
    _save(tmp_path, cases)
    main(activate)
    assert "consumer_credit-v9" in capsys.readouterr().out

"""Domain declarations: discovery, the generic sample landing, scaffolding and checks (fast)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.app.demo_data import prepare_landing, sample_applications
from hitl_gate.app.domain_check import check_domain
from hitl_gate.app.scaffold import (
    ScaffoldError,
    ScaffoldOptions,
    detect_case_id,
    infer_column,
    scaffold_domain,
)
from hitl_gate.core.domain import DomainConfigError, available_domains, load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import DOMAINS_ENV
from tests.signed_acts_fixtures import staffed_home


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An extra domains root: `$HITL_DOMAINS_DIR` for the CLI, passed explicitly to the library."""
    folder = tmp_path / "root"
    (folder / "domains").mkdir(parents=True)
    monkeypatch.setenv(DOMAINS_ENV, str(folder / "domains"))
    return folder


def _history(tmp_path: Path) -> Path:
    """A small history without an id or a date column, with a yes/no outcome."""
    n = 200
    frame = pl.DataFrame(
        {
            "amount": [float(100 + (i * 37) % 900) for i in range(n)],
            "tenure": [None if i % 10 == 0 else i % 48 for i in range(n)],
            "segment": ["retail" if i % 3 else "business" for i in range(n)],
            # Mostly large amounts go bad, one case in seven the other way: a signal, not a
            # copy of the outcome (the leakage screen would rightly take a copy out).
            "outcome": [
                "bad" if ((i * 37) % 900 > 700) != (i % 7 == 0) else "good" for i in range(n)
            ],
        }
    )
    path = tmp_path / "history.parquet"
    frame.write_parquet(path)
    return path


def _scaffold(tmp_path: Path, root: Path, name: str = "loans_b") -> Path:
    options = ScaffoldOptions(
        name=name, source=_history(tmp_path), label="outcome", positive=["bad"]
    )
    return scaffold_domain(options, root=root).domain_file


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_infer_column_types_nulls_ranges_and_allowed_values() -> None:
    amount = infer_column(pl.Series([120.0, 980.5, None]))
    assert amount["type"] == "float" and amount["nullable"] is True
    assert amount["min"] == 0.0 and amount["max"] >= 980.5 * 1.1  # margin above the maximum
    signed = infer_column(pl.Series([-50, 10, 20]))
    assert signed["type"] == "int" and signed["nullable"] is False and signed["min"] < -50
    level = infer_column(pl.Series(["a", "b", "a", "a", "b"]))
    assert level["allowed"] == ["a", "b"]
    free_text = infer_column(pl.Series([f"name {i}" for i in range(50)]))
    assert "allowed" not in free_text


def test_case_id_detection_prefers_id_names_then_row_numbers() -> None:
    frame = pl.DataFrame({"rownames": [1, 2, 3], "x": [5, 5, 6], "claim_ref": ["a", "b", "c"]})
    assert detect_case_id(frame) == "claim_ref"
    assert detect_case_id(frame.drop("claim_ref")) == "rownames"
    assert detect_case_id(pl.DataFrame({"x": [1, 1, 2]})) is None


def test_shipped_domains_are_valid_and_distinct() -> None:
    assert available_domains() == ["consumer_credit", "lending_club"]
    for name in available_domains():
        assert check_domain(name) == [], name


def test_lending_club_sample_lands_deterministic_daily_files(tmp_path: Path) -> None:
    domain = load_domain("lending_club")
    first = sample_applications(domain)
    assert first.equals(sample_applications(domain)), "seeded: the same every run"
    assert first.height == 9_857 and first["loan_id"].n_unique() == 9_857
    assert first["loan_id"].sort()[0] == "LCMD-00001"
    times = first["application_time"]
    assert times.min() >= datetime(2016, 1, 1, 8) and times.max() < datetime(2016, 3, 31, 20)
    landed = prepare_landing(domain, tmp_path)
    assert (landed.days, landed.first_day, landed.last_day) == (91, "2016-01-01", "2016-03-31")
    day = pl.read_csv(next((tmp_path / "lending_club" / "loans" / "2016-02-01").glob("*.csv")))
    assert "Class" not in day.columns, "the outcome never travels with the application"
    outcomes = pl.read_csv(tmp_path / "lending_club" / "outcomes" / "class_2016q1.csv")
    assert outcomes.columns == ["loan_id", "Class"] and outcomes.height == 9_857
    assert prepare_landing(domain, tmp_path).files_written == 0, "a second landing is a no-op"


def test_init_scaffolds_a_valid_domain_outside_the_checkout(
    tmp_path: Path, root: Path, hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    domain_file = _scaffold(tmp_path, root)
    extra = [root / "domains"]  # what `--domains-dir` / `$HITL_DOMAINS_DIR` give the CLI
    assert "loans_b" in available_domains(extra)
    assert check_domain("loans_b", extra) == []
    domain = load_domain("loans_b", extra)
    assert domain.case_id == "case_id" and domain.sample.event_time.period == "range"
    assert domain.contract.columns["tenure"].nullable is True
    assert domain.contract.columns["segment"].allowed == ["business", "retail"]
    assert "outcome" not in domain.contract.columns
    assert domain.policy_path == (root / "policies" / "loans_b" / "v1.yaml").resolve()
    assert domain.model.reason_codes["amount"].risk_direction == "higher"
    assert domain.retention_class == "regulatory_7y"
    # Queues and masking come with the scaffold: the policy's queue has a role that may work it.
    from hitl_gate.review.settings import review_settings

    settings = review_settings(domain)
    assert settings is not None and "loans_b_review" in settings.queues
    assert "loans_b_review" in settings.roles[settings.queues["loans_b_review"].role]
    # The starter policy ships with test cases that pass, so it can be activated as it is.
    policy_file = root / "policies" / "loans_b" / "v1.yaml"
    cases = yaml.safe_load(policy_file.with_name("v1.cases.yaml").read_text(encoding="utf-8"))
    assert {c["expect"]["route"] for c in cases["cases"]} == {
        "auto_approve", "auto_decline", "human_review"
    }  # fmt: skip
    cli = ["--home", str(hitl_paths.home), "--domain", "loans_b", "policy"]
    main([*cli, "test"])
    assert "OK: 1 policy file(s) pass their tests" in capsys.readouterr().out
    keys = staffed_home(hitl_paths.audit_db, tmp_path)
    main([*cli, "activate", str(policy_file), "--signing-key", str(keys.private("ann")),
          "--approval-key", str(keys.private("bob"))])  # fmt: skip
    assert "loans_b-v1" in capsys.readouterr().out
    # The cases pin the starter's intent: a top band that is no longer declined fails them.
    _edit(policy_file, lambda data: data["rules"][0].update(outcome="auto_approve"))
    with pytest.raises(SystemExit, match=r"(?s)FAILED policy tests.*case 'band \w'"):
        main([*cli, "test"])
    with pytest.raises(ScaffoldError, match="already exists"):
        _scaffold(tmp_path, root)
    assert domain_file.is_file()


def test_init_refuses_a_positive_value_that_never_occurs(tmp_path: Path, root: Path) -> None:
    options = ScaffoldOptions(
        name="loans_c", source=_history(tmp_path), label="outcome", positive=["default"]
    )
    with pytest.raises(ScaffoldError, match="do not occur in 'outcome'"):
        scaffold_domain(options, root=root)


def test_check_names_every_problem_with_its_file_and_field(tmp_path: Path, root: Path) -> None:
    domain_file = _scaffold(tmp_path, root)

    def break_it(data: dict) -> None:
        data["features"]["derived"]["ratio"] = "amount / missing_column"
        data["model"]["name"] = "consumer_credit_pd"  # another domain's registered model
        data["model"]["bands"] = {"A": 0.2, "B": 0.1, "C": 1.0}
        data["review"]["context_columns"].append("nowhere")

    _edit(domain_file, break_it)
    policy_file = root / "policies" / "loans_b" / "v1.yaml"
    _edit(policy_file, lambda p: p["rules"][0].update(when="segment >= 3 AND amunt > 1"))
    problems = "\n".join(check_domain("loans_b", [root / "domains"]))
    assert "features.derived 'ratio': uses columns not in the contract: ['missing_column']" in (
        problems
    )
    assert "model.name 'consumer_credit_pd' is already used by 'consumer_credit'" in problems
    assert "model.bands must be strictly ascending" in problems
    assert "review.context_columns not on a case: ['nowhere']" in problems
    assert f"{policy_file.resolve()}: rule 'DEC-TOP-BAND'" in problems and "amunt" in problems


def test_check_reports_an_invalid_declaration_by_field(tmp_path: Path, root: Path) -> None:
    domain_file = _scaffold(tmp_path, root)
    _edit(domain_file, lambda d: d["model"]["features"].append("not_a_feature"))
    problems = check_domain("loans_b", [root / "domains"])
    assert len(problems) == 1 and "not_a_feature" in problems[0]
    assert str(domain_file) in problems[0]
    with pytest.raises(DomainConfigError, match="not_a_feature"):
        load_domain("loans_b", [root / "domains"])


def test_check_refuses_a_data_window_that_leaves_out_sample_days(
    tmp_path: Path, root: Path
) -> None:
    domain_file = _scaffold(tmp_path, root)
    _edit(domain_file, lambda d: d.update(data_window={"start": "2000-01-01", "end": "2000-01-31"}))
    problems = check_domain("loans_b", [root / "domains"])
    assert len(problems) == 1 and "data_window 2000-01-01..2000-01-31 leaves out" in problems[0]
    _edit(domain_file, lambda d: d.update(data_window={"start": "2000-01-01"}))  # open: all in
    assert check_domain("loans_b", [root / "domains"]) == []


def test_a_domain_declared_twice_is_refused(root: Path) -> None:
    shipped = Path(load_domain("lending_club").source_dir) / "domain.yaml"
    copy = root / "domains" / "lending_club" / "domain.yaml"
    copy.parent.mkdir()
    copy.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DomainConfigError, match="declared twice"):
        available_domains([root / "domains"])


def test_range_event_times_stay_inside_the_declared_days() -> None:
    domain = load_domain("lending_club")
    days = sample_applications(domain)["application_time"].dt.date()
    assert days.min() == date(2016, 1, 1) and days.max() == date(2016, 3, 31)


def test_retention_class_is_one_of_the_declared_classes(tmp_path: Path) -> None:
    """A typo in the retention class fails at load, naming the field."""
    from hitl_gate.core.domain import PROJECT_ROOT, load_domain_file

    source = (PROJECT_ROOT / "domains" / "lending_club" / "domain.yaml").read_text("utf-8")
    broken = tmp_path / "domains" / "lending_club" / "domain.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text(source.replace("retention_class: regulatory_7y", "retention_class: 7y"))
    with pytest.raises(DomainConfigError, match="retention_class"):
        load_domain_file(broken)
    assert load_domain("lending_club").retention_class == "regulatory_7y"


def test_demo_of_domain_demo_means_every_demo_domain(tmp_path: Path) -> None:
    """`hitl demo --domain demo` runs every domain with a sample, as `--domain demo` means on
    every command; a named domain runs alone."""
    from hitl_gate.app.demo import demo_domains, selected_domains
    from hitl_gate.core.settings import HitlSettings

    settings = HitlSettings(paths=HitlPaths.at(tmp_path / "home"))
    every = demo_domains(settings)
    assert set(every) >= {"consumer_credit", "lending_club"}
    assert selected_domains(settings, "demo") == every
    assert selected_domains(settings, None) == every
    assert selected_domains(settings, "lending_club") == ["lending_club"]

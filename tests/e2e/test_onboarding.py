"""Onboarding a domain by configuration alone: `hitl domain init/check`, then run it end to end.

A throwaway third domain (warranty claims, generated here) is scaffolded from a CSV of past
cases with outcomes into a temporary folder, checked, fed landing files written by the test and
run from ingestion to audit through the CLI only: no Python of the project is changed or added.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, query_frame, scalar
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import DOMAINS_ENV
from tests.e2e.landed import settled

NAME = "claims"
DAYS = 28
ROWS = 420
FIRST_DAY = date(2024, 2, 1)


def generated_claims(rows: int = ROWS, seed: int = 7) -> pl.DataFrame:
    """Past warranty claims with an outcome: fraud is likelier for large, early, online claims."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 400.0, rows), 2)
    age = rng.integers(0, 60, rows)
    prior = rng.poisson(0.6, rows)
    online = rng.random(rows) < 0.5
    logit = -3.2 + amount / 900 - age / 40 + 0.6 * prior + 0.8 * online
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, 9)
    times = [start + timedelta(days=int(d), minutes=int(m)) for d, m in
             zip(rng.integers(0, DAYS, rows), rng.integers(0, 600, rows), strict=True)]  # fmt: skip
    return pl.DataFrame(
        {
            "claim_ref": [f"CLM-{i:05d}" for i in range(1, rows + 1)],
            "submitted_at": pl.Series(times, dtype=pl.Datetime("us")),
            "claim_amount": amount,
            "product_age_months": age,
            "prior_claims": prior,
            "channel": np.where(online, "online", "store"),
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "fraud": np.where(fraud, "yes", "no"),
        }
    )


def write_landing(cases: pl.DataFrame, landing: Path) -> int:
    """Land the cases as one CSV per day and the outcomes separately, as a source system would."""
    days = cases.with_columns(pl.col("submitted_at").dt.date().alias("day"))
    for (day,), frame in days.group_by("day"):
        folder = landing / NAME / "cases" / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        frame.drop("day", "fraud").write_csv(
            folder / f"claims_{day}.csv", datetime_format="%Y-%m-%dT%H:%M:%S"
        )
    outcomes = landing / NAME / "outcomes"
    outcomes.mkdir(parents=True, exist_ok=True)
    cases.select("claim_ref", "fraud").write_csv(outcomes / "outcomes.csv")
    settled(landing / NAME)  # a source system's finished files: taken without a settle wait
    return days["day"].n_unique()


@pytest.fixture
def domains_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder outside the checkout for `domains/` and `policies/`, seen by discovery."""
    root = tmp_path / "onboarding"
    monkeypatch.setenv(DOMAINS_ENV, str(root / "domains"))
    return root


@pytest.mark.e2e
def test_third_domain_from_csv_to_audit_by_configuration_only(
    hitl_paths: HitlPaths, domains_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "claims_history.csv"
    cases = generated_claims()
    cases.write_csv(sample, datetime_format="%Y-%m-%dT%H:%M:%S")
    domains = str(domains_root / "domains")
    home = ["--home", str(hitl_paths.home), "--domains-dir", domains, "--domain", NAME]

    main(["domain", "init", NAME, "--from", str(sample), "--label", "fraud", "--positive", "yes"])
    out = capsys.readouterr().out
    assert "case id claim_ref, event time submitted_at" in out
    assert (domains_root / "policies" / NAME / "v1.yaml").is_file()
    main(["--domains-dir", domains, "domain", "check", NAME])
    assert f"{NAME}: declarations are valid" in capsys.readouterr().out

    # A bad row in one day's file: quarantined with its reason, still accounted for.
    days = write_landing(cases, hitl_paths.landing)
    day_file = next((hitl_paths.landing / NAME / "cases" / FIRST_DAY.isoformat()).glob("*.csv"))
    good = day_file.read_text(encoding="utf-8").splitlines()
    bad = good[1].split(",")
    bad[0], bad[2] = "CLM-BAD01", "a lot"
    day_file.write_text("\n".join([*good, ",".join(bad)]) + "\n", encoding="utf-8")
    settled(day_file)

    last = (FIRST_DAY + timedelta(days=DAYS - 1)).isoformat()
    span = ["--partition", FIRST_DAY.isoformat(), "--to", last]
    main([*home, "run", *span, "--ingest-only"])
    main([*home, "train"])
    main([*home, "run", *span])
    assert f"{NAME}: pipeline ran for" in capsys.readouterr().out

    with audit_connection(hitl_paths.audit_db, read_only=True) as con:
        status = dict(
            query_frame(
                con, "SELECT status, cases FROM case_status_summary WHERE domain = ?", [NAME]
            ).iter_rows()
        )
        accounting = query_frame(con, "SELECT * FROM partition_accounting WHERE domain = ?", [NAME])
        quarantined = scalar(
            con,
            "SELECT count(*) FROM quarantine WHERE domain = ? AND case_id = 'CLM-BAD01'",
            [NAME],
        )
        traced = query_frame(
            con,
            "SELECT DISTINCT model_name, policy_version FROM case_trace WHERE domain = ?",
            [NAME],
        )
    assert sum(status.values()) == ROWS + 1
    assert status["quarantined"] == 1 and quarantined >= 1
    assert accounting.height == days and accounting["balanced"].all()
    assert int(accounting["rows_read"].sum()) == ROWS + 1
    assert traced.rows() == [(f"{NAME}_risk", f"{NAME}-v1")]

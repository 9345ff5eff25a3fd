"""The claims home: a small scaffolded domain, built once per test run, restored for each test.

The generated warranty claims of tests/e2e/test_onboarding.py, scaffolded by `hitl domain init`
into a domains folder of the home's own, with a review queue of a tiny daily capacity
(`CAPACITY`); all `DAYS` ingested, a model trained on them, then `RUN_DAYS` decided in two runs
(`FIRST_DAY..MIDDLE-1`, `MIDDLE..LAST`). One domain and about 15 cases a day: a full pipeline
home at a fraction of the demo's cost, whose tests run on a worker of their own
(`claims_template` in tests/e2e/conftest.py's `ONE_WORKER_TEMPLATES`), beside the demo's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.home import HitlPaths
from hitl_gate.core.settings import DOMAINS_ENV
from tests.e2e.home_templates import HOME_ENV_NAMES
from tests.e2e.test_onboarding import DAYS, FIRST_DAY, NAME, generated_claims, write_landing

CAPACITY = 2  # a day's review work of the claims queue; routing sends it ~5 a day
RUN_DAYS = 10  # decided in two runs (all DAYS are ingested: the model trains on them)
MIDDLE = FIRST_DAY + timedelta(days=RUN_DAYS // 2)
LAST = FIRST_DAY + timedelta(days=RUN_DAYS - 1)


@dataclass(frozen=True)
class ClaimsHome:
    """The home, the domains root and the CLI prefix of the scaffolded claims domain."""

    paths: HitlPaths
    root: Path
    cli: list[str]

    def run(self, first: date, last: date) -> None:
        main([*self.cli, "run", "--partition", first.isoformat(), "--to", last.isoformat()])

    def frame(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        """`sql` on the audit database; `parameters` default to the domain's name alone."""
        with audit_connection(self.paths.audit_db, read_only=True) as con:
            return query_frame(con, sql, [NAME] if parameters is None else parameters)


def claims_home_at(work: Path) -> ClaimsHome:
    """The claims home built (or restored) in `work`."""
    root = work / "onboarding"
    paths = HitlPaths.at(work / "home")
    cli = ["--home", str(paths.home), "--domains-dir", str(root / "domains"), "--domain", NAME]
    return ClaimsHome(paths, root, cli)


def build_claims(work: Path) -> None:
    """The claims domain scaffolded, trained and decided for days 1-5 then 6-10 (two runs)."""
    root = work / "onboarding"
    with pytest.MonkeyPatch.context() as patch:
        for name in HOME_ENV_NAMES:
            patch.delenv(name, raising=False)
        patch.setenv(DOMAINS_ENV, str(root / "domains"))
        paths = HitlPaths.at(work / "home")
        cases = generated_claims()
        sample = work / "claims_history.csv"
        cases.write_csv(sample, datetime_format="%Y-%m-%dT%H:%M:%S")
        main(
            ["domain", "init", NAME, "--from", str(sample), "--label", "fraud", "--positive", "yes"]
        )
        review_file = root / "domains" / NAME / "review.yaml"
        review = yaml.safe_load(review_file.read_text(encoding="utf-8"))
        review["queues"][f"{NAME}_review"]["daily_capacity"] = CAPACITY
        review_file.write_text(yaml.safe_dump(review, sort_keys=False), encoding="utf-8")
        write_landing(cases, paths.landing)
        home = claims_home_at(work)
        last_landed = FIRST_DAY + timedelta(days=DAYS - 1)
        main([*home.cli, "run", "--partition", FIRST_DAY.isoformat(), "--to",
              last_landed.isoformat(), "--ingest-only"])  # fmt: skip
        main([*home.cli, "train"])
        # Review batches go to registered people of the queue's role: the onboarded domain's.
        from hitl_gate.app.demo_identities import ensure_demo_people
        from hitl_gate.core.domain import load_domain

        ensure_demo_people(paths, [load_domain(NAME, [root / "domains"])])
        home.run(FIRST_DAY, MIDDLE - timedelta(days=1))
        home.run(MIDDLE, LAST)

"""`hitl audit trace ID [--domain D]` when two real domains hold the same case id.

Case ids are unique per domain only: `consumer_credit` (id column `application_id`) and
`lending_club` (`loan_id`) both decide a case `17` here, each with its own stored feature
file. The trace must show the named domain's case, read that domain's feature file with that
domain's id column, and refuse to pick one when none is named.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from tests.blank_audit_db import blank_if_missing
from tests.unit.audit.tamper_home import add_row

SHARED = "17"
DAY = "2026-01-02"
ID_COLUMN = {"consumer_credit": "application_id", "lending_club": "loan_id"}
ROUTE = {"consumer_credit": "auto_decline", "lending_club": "auto_approve"}


@pytest.fixture
def home(tmp_path: Path) -> HitlPaths:
    """A home where both shipped domains decided a case `17`, plus one id only lending_club has."""
    paths = HitlPaths.at(tmp_path / "home")
    with audit_connection(blank_if_missing(paths.audit_db)) as con:
        for n, (domain, column) in enumerate(ID_COLUMN.items(), start=1):
            add_row(
                con, "decisions", n, domain=domain, case_id=SHARED, partition_date=DAY,
                route=ROUTE[domain], model_name=f"{domain}-model",
            )  # fmt: skip
            folder = paths.warehouse / domain / "case_features"
            folder.mkdir(parents=True)
            pl.DataFrame(
                {column: [SHARED], f"{domain}_feature": [float(n)], "feature_digest": ["x"]}
            ).write_parquet(folder / f"{DAY}.parquet")
        add_row(con, "decisions", 3, domain="lending_club", case_id="LC-only", partition_date=DAY)
        add_row(con, "quarantine", 4, domain="consumer_credit", case_id=SHARED, row_number=9)
    return paths


def _trace(paths: HitlPaths, *extra: str) -> None:
    main(["--home", str(paths.home), "audit", "trace", *extra])


@pytest.mark.parametrize("domain", sorted(ID_COLUMN))
def test_the_named_domain_is_traced_with_its_own_id_column(
    home: HitlPaths, domain: str, capsys
) -> None:
    _trace(home, SHARED, "--domain", domain)
    out = capsys.readouterr().out
    other = next(name for name in ID_COLUMN if name != domain)
    assert f"{domain}-model" in out and f"{other}-model" not in out
    assert ROUTE[domain] in out and ROUTE[other] not in out
    assert f"{domain}_feature" in out and f"{other}_feature" not in out  # its own feature file
    assert ("Quarantined" in out) == (domain == "consumer_credit")  # quarantine is per domain too


def test_the_global_domain_option_names_the_domain_too(home: HitlPaths, capsys) -> None:
    main(["--home", str(home.home), "--domain", "lending_club", "audit", "trace", SHARED])
    assert "auto_approve" in capsys.readouterr().out


def test_a_repeated_id_without_a_domain_is_refused_listing_the_domains(home: HitlPaths) -> None:
    with pytest.raises(SystemExit) as refused:
        _trace(home, SHARED)
    message = str(refused.value.code)
    assert "recorded in 2 domains: consumer_credit, lending_club" in message
    assert "--domain" in message


def test_an_id_one_domain_holds_needs_no_domain(home: HitlPaths, capsys) -> None:
    _trace(home, "LC-only")
    assert "Case LC-only" in capsys.readouterr().out


def test_a_domain_that_does_not_hold_the_id_is_refused_naming_where_it_is(
    home: HitlPaths,
) -> None:
    with pytest.raises(SystemExit) as refused:
        _trace(home, "LC-only", "--domain", "consumer_credit")
    assert "not found in domain consumer_credit; recorded in: lending_club" in str(
        refused.value.code
    )

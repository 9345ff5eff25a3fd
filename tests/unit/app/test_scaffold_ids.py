"""Scaffolded case ids carry the domain's prefix, and the declared pattern admits exactly them.

Two domains onboarded from R or pandas exports both have a case `17`; prefixed ids keep them
apart, and the pattern makes a landing file with bare ids a quarantine, not a mix-up.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hitl_gate.app.demo_data import sample_applications
from hitl_gate.app.domain_check import check_domain
from hitl_gate.app.scaffold import ScaffoldError, ScaffoldOptions, scaffold_domain
from hitl_gate.app.scaffold_ids import plan_case_ids, prefixed_pattern
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.quality.case_ids import matches_pattern

ROWS = 120


def _history(tmp_path: Path, ids: dict[str, list]) -> Path:
    frame = pl.DataFrame(
        {
            **ids,
            "amount": [float(100 + (i * 37) % 900) for i in range(ROWS)],
            "outcome": ["bad" if ((i * 37) % 900 > 700) != (i % 7 == 0) else "good"
                        for i in range(ROWS)],
        }
    )  # fmt: skip
    path = tmp_path / f"history_{len(list(tmp_path.iterdir()))}.parquet"
    frame.write_parquet(path)
    return path


def _domain(tmp_path: Path, name: str, ids: dict[str, list]) -> DomainConfig:
    options = ScaffoldOptions(
        name=name, source=_history(tmp_path, ids), label="outcome", positive=["bad"]
    )
    scaffold_domain(options, root=tmp_path / "root")
    extra = [tmp_path / "root" / "domains"]
    assert check_domain(name, extra) == []
    return load_domain(name, extra)


def _landed_ids(domain: DomainConfig) -> pl.Series:
    """The ids the demo landing really writes for the sample (demo_data, not a copy)."""
    return sample_applications(domain)[domain.case_id]


def test_row_numbers_become_ids_prefixed_by_the_domain(tmp_path: Path) -> None:
    rownames = {"rownames": list(range(1, ROWS + 1))}
    loans = _domain(tmp_path, "loans_a", rownames)
    cards = _domain(tmp_path, "cards_b", rownames)
    loan_ids, card_ids = _landed_ids(loans), _landed_ids(cards)
    assert loan_ids.sort()[0] == "LOANS_A-1" and card_ids.sort()[0] == "CARDS_B-1"
    assert set(loan_ids.to_list()).isdisjoint(card_ids.to_list()), "ids never repeat"
    # The generated pattern admits every landed id, and refuses a bare row number or the
    # other domain's ids (those would be quarantined, never taken as this domain's case).
    assert matches_pattern(loan_ids, loans.case_id_pattern).all()
    assert loans.case_id_pattern == prefixed_pattern("LOANS_A-")
    refused = pl.Series(["17", "CARDS_B-17", "LOANS_A-", "loans_a-17"])
    assert not matches_pattern(refused, loans.case_id_pattern).any()


def test_generated_ids_match_their_pattern(tmp_path: Path) -> None:
    domain = _domain(tmp_path, "noid_c", {})
    ids = _landed_ids(domain)
    assert ids.sort()[0] == "NOID_C-001" and matches_pattern(ids, domain.case_id_pattern).all()


def test_ids_with_their_own_prefix_are_kept_as_they_are(tmp_path: Path) -> None:
    domain = _domain(tmp_path, "claims_d", {"claim_ref": [f"CLM-{i:05d}" for i in range(ROWS)]})
    ids = _landed_ids(domain)
    assert ids.sort()[0] == "CLM-00000" and matches_pattern(ids, domain.case_id_pattern).all()


def test_integer_and_digit_text_ids_are_prefixed(tmp_path: Path) -> None:
    frame = pl.DataFrame({"loan_id": [str(10_000 + i) for i in range(5)]})
    plan = plan_case_ids(frame, "mortgages", "loan_id")
    assert plan.spec == {"column": "loan_id", "prefix": "MORTGAGES-"}
    numbers = plan_case_ids(pl.DataFrame({"loan_id": list(range(5))}), "mortgages", "loan_id")
    assert numbers.spec["prefix"] == "MORTGAGES-"


def test_ids_the_pattern_could_never_admit_are_refused_at_scaffold(tmp_path: Path) -> None:
    ids = {"app_ref": [f"app {i}" for i in range(ROWS)]}  # spaces: every row quarantined later
    with pytest.raises(ScaffoldError, match=r"do not match .*--case-id"):
        _domain(tmp_path, "spaces_e", ids)

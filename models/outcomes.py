"""Observed post-decision outcomes: the labels training learns from and metrics report on."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hitl_gate.core.domain import DomainConfig


def outcome_files(landing_root: Path, domain: DomainConfig) -> list[Path]:
    """The domain's outcome files in the order their observations apply (the last one wins)."""
    return sorted((landing_root / domain.outcomes_subdir).glob("*.csv"))


def read_outcomes(landing_root: Path, domain: DomainConfig) -> pl.DataFrame:
    """Every outcome file of the domain (case id, label column), latest observation per case."""
    files = outcome_files(landing_root, domain)
    if not files:
        return pl.DataFrame(
            schema={domain.case_id: pl.String, domain.model.label.column: pl.String}
        )
    outcomes = pl.concat(
        [pl.read_csv(f, infer_schema=False) for f in files], how="diagonal_relaxed"
    )
    return outcomes.select(domain.case_id, domain.model.label.column).unique(
        domain.case_id, keep="last", maintain_order=True
    )


def bad_outcome(domain: DomainConfig) -> pl.Expr:
    """True where the label column holds one of the declared positive (bad) values."""
    label = domain.model.label
    return pl.col(label.column).is_in(label.positive_values)


def outcome_flags(outcomes: pl.DataFrame, domain: DomainConfig) -> pl.DataFrame:
    """Outcomes as (case_id, bad): the shape decision metrics join on."""
    return outcomes.select(
        pl.col(domain.case_id).alias("case_id"), bad_outcome(domain).alias("bad")
    )

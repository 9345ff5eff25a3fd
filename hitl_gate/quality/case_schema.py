"""The case columns a policy can refer to, derived from the domain declaration alone.

Used to validate a policy before any case is stored (a fresh installation, CI). Once the
pipeline has run, the stored routed cases are the better reference (exact types, real values)
and `hitl policy validate` uses them instead. Features are typed as Feast serves them (Float64,
whatever the contract type); scores as `models/scoring.py` writes them.
"""

from __future__ import annotations

import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.quality.contract import CONTRACT_DTYPES

SCORE_COLUMNS: dict[str, pl.DataType] = {
    "pd": pl.Float64(),
    "score": pl.Int64(),
    "risk_band": pl.String(),
    "reason_codes": pl.List(pl.String()),
    "model_version": pl.String(),
}


def declared_case_schema(domain: DomainConfig) -> dict[str, pl.DataType]:
    """Contract columns, feature view columns and score columns with their types."""
    schema = {name: CONTRACT_DTYPES[c.type] for name, c in domain.contract.columns.items()}
    schema.update({name: pl.Float64() for name in domain.features.names})
    schema.update(SCORE_COLUMNS)
    schema["partition_date"] = pl.Date()
    return schema

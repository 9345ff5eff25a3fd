"""Distribution-level expectations, declared per domain in Great Expectations' vocabulary.

Suites live in a domain file (`domains/<name>/expectations.yaml`) using GE's expectation names
(`expect_column_values_to_not_be_null`, `..._to_be_between`, `..._to_be_in_set`,
`expect_column_mean_to_be_between`, `expect_table_row_count_to_be_between`, with `mostly`), plus
`expect_table_row_count_within_trailing_range` for a day's rows against its trailing days.
This module only declares and loads them (cheap, no GE import);
`hitl_gate/quality/gx_suites.py` runs them with Great Expectations' SQL engine on DuckDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hitl_gate.core.yaml_files import load_model

ExpectationType = Literal[
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_mean_to_be_between",
    "expect_table_row_count_to_be_between",
    "expect_table_row_count_within_trailing_range",
]
TRAILING = "expect_table_row_count_within_trailing_range"
_NEEDS_COLUMN = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_mean_to_be_between",
}


class Expectation(BaseModel):
    """One declared expectation; which fields apply depends on `expectation`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expectation: ExpectationType
    column: str | None = None
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)
    min_value: float | None = None
    max_value: float | None = None
    value_set: list[str | int | float] | None = None
    days: int = Field(default=7, ge=1)
    min_ratio: float = 0.0
    max_ratio: float | None = None

    @model_validator(mode="after")
    def _fields_fit(self) -> Expectation:
        if (self.expectation in _NEEDS_COLUMN) != (self.column is not None):
            raise ValueError(
                f"{self.expectation}: `column` is required for column expectations only"
            )
        if self.expectation == "expect_column_values_to_be_in_set" and not self.value_set:
            raise ValueError(f"{self.expectation} on '{self.column}' needs a value_set")
        return self

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


class Suite(BaseModel):
    """The expectations for one asset; a blocking suite stops the data flowing on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blocking: bool = False
    expectations: list[Expectation]

    @model_validator(mode="after")
    def _one_trailing_window(self) -> Suite:
        if sum(e.expectation == TRAILING for e in self.expectations) > 1:
            raise ValueError(f"a suite holds at most one {TRAILING}")
        return self


class ExpectationsConfig(BaseModel):
    """A domain's suites by asset stage (`validated_cases`, `case_features`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suites: dict[str, Suite]


def load_expectations(path: Path) -> ExpectationsConfig:
    """Load and validate a domain's expectations file; errors name the file."""
    return load_model(path, ExpectationsConfig, "expectations file", ValueError)


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation on one batch."""

    label: str
    success: bool
    observed: str
    unexpected: int | None = None
    unexpected_percent: float | None = None


def outcomes_frame(outcomes: Sequence[Outcome]) -> pl.DataFrame:
    """Outcomes as a table (for metadata and docs)."""
    return pl.DataFrame(
        [o.__dict__ for o in outcomes],
        schema={
            "label": pl.String,
            "success": pl.Boolean,
            "observed": pl.String,
            "unexpected": pl.Int64,
            "unexpected_percent": pl.Float64,
        },
        orient="row",
    )

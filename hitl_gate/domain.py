"""Typed declaration of a decision domain, loaded from `domains/<name>/domain.yaml`.

Everything specific to one business (credit, claims, payments) lives in that file and the
files it names; the generic stages only ever read a `DomainConfig`. Validation happens at
load time so a bad declaration fails with the file and field named, before any data moves.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOMAINS_DIR = PROJECT_ROOT / "domains"

ColumnType = Literal["str", "int", "float", "bool", "datetime", "date"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnContract(_Strict):
    """One input column: its type, nullability and allowed values or range."""

    type: ColumnType
    nullable: bool = True
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    description: str = ""


class ContractRule(_Strict):
    """A cross-field rule: a SQL boolean expression every row must satisfy.

    Like a SQL CHECK constraint, a row fails only when the expression is false; a NULL result
    (a referenced value is missing) passes, since nullability is the columns' own business.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    expr: str
    message: str

    def columns(self) -> list[str]:
        """Column names the expression refers to, in order of first use."""
        import polars as pl

        return list(dict.fromkeys(pl.sql_expr(self.expr).meta.root_names()))


class ContractConfig(_Strict):
    """The data contract of the domain's input files (versioned)."""

    version: int
    columns: dict[str, ColumnContract]
    max_future_skew_hours: float = 0.0
    rules: list[ContractRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_parse(self) -> ContractConfig:
        """Every rule parses as SQL and names only contract columns; ids are unique."""
        import polars as pl

        ids = [rule.id for rule in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError(f"contract rule ids must be unique: {ids}")
        for rule in self.rules:
            try:
                names = rule.columns()
            except (pl.exceptions.PolarsError, ValueError) as exc:
                raise ValueError(
                    f"contract rule '{rule.id}': cannot parse {rule.expr!r}: {exc}"
                ) from exc
            unknown = [n for n in names if n not in self.columns]
            if unknown or not names:
                raise ValueError(
                    f"contract rule '{rule.id}' must refer to contract columns; unknown: {unknown}"
                )
        return self


class FeatureConfig(_Strict):
    """Feast objects and the derived features computed from validated inputs.

    `derived` maps a feature name to a SQL expression over contract columns; it is parsed
    by Polars into a vectorised expression (never `eval`).
    """

    project: str
    entity: str
    view: str
    service: str
    ttl_days: int = 3650
    owner: str
    derived: dict[str, str] = Field(default_factory=dict)
    passthrough: list[str] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """All feature names served by the feature view, in a stable order."""
        return [*self.passthrough, *self.derived]


class LabelConfig(_Strict):
    """How the training label is derived from outcomes that arrive after the decision."""

    column: str
    positive_values: list[str]
    description: str


class ReasonCode(_Strict):
    """A controlled reason code shown to reviewers and on adverse-action notices.

    `risk_direction` says which way of the feature means more risk; the scorecard keeps only
    features whose fitted effect agrees, so the text of a reason is always true of the model.
    """

    code: str
    text: str
    risk_direction: Literal["higher", "lower"] = "higher"


class ModelConfig(_Strict):
    """The registered model, its features, training split and risk bands."""

    name: str
    features: list[str]
    label: LabelConfig
    validation_from: date
    # Upper bounds of probability of default per band, ascending; last band takes the rest.
    bands: dict[str, float]
    # Adverse-action reason per model feature: a stable code and plain-language text.
    reason_codes: dict[str, ReasonCode] = Field(default_factory=dict)


class ReviewConfig(_Strict):
    """What reviewers see and may answer."""

    context_columns: list[str]
    verdicts: list[str] = Field(default_factory=lambda: ["approve", "decline"])
    batch_size: int = 200
    sla_hours: int = 48


class DomainConfig(_Strict):
    """A decision domain: inputs, contract, features, model, policy and review settings."""

    name: str
    description: str
    case_id: str
    event_time: str
    landing_subdir: str
    outcomes_subdir: str
    start_date: date
    contract: ContractConfig
    features: FeatureConfig
    model: ModelConfig
    policy: str  # path relative to the project root, e.g. policies/consumer_credit/v1.yaml
    # Expectation suites file, relative to the domain folder (hitl_gate/expectations.py).
    expectations: str | None = None
    review: ReviewConfig
    source_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _columns_exist(self) -> DomainConfig:
        cols = self.contract.columns
        for required in (self.case_id, self.event_time):
            if required not in cols:
                raise ValueError(f"'{required}' must be declared in contract.columns")
        missing = [f for f in self.features.passthrough if f not in cols]
        if missing:
            raise ValueError(f"features.passthrough names undeclared columns: {missing}")
        unknown = [f for f in self.model.features if f not in self.features.names]
        if unknown:
            raise ValueError(f"model.features not served by the feature view: {unknown}")
        uncoded = [f for f in self.model.features if f not in self.model.reason_codes]
        if uncoded:
            raise ValueError(f"model.features without a reason code: {uncoded}")
        return self

    @property
    def policy_path(self) -> Path:
        """Absolute path of the domain's active policy file."""
        return (PROJECT_ROOT / self.policy).resolve()


class DomainConfigError(ValueError):
    """A domain declaration that cannot be loaded, with the file named."""


def load_domain_file(path: Path) -> DomainConfig:
    """Load and validate one `domain.yaml`; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DomainConfigError(f"{path}: cannot read domain declaration: {exc}") from exc
    try:
        return DomainConfig.model_validate({**raw, "source_dir": path.parent})
    except ValidationError as exc:
        raise DomainConfigError(f"{path}: invalid domain declaration:\n{exc}") from exc


@cache
def load_domain(name: str) -> DomainConfig:
    """Load the shipped domain `name` from `domains/<name>/domain.yaml`."""
    return load_domain_file(DOMAINS_DIR / name / "domain.yaml")


def available_domains() -> list[str]:
    """Names of every domain declared under `domains/`."""
    return sorted(p.parent.name for p in DOMAINS_DIR.glob("*/domain.yaml"))

"""Typed declaration of a decision domain, loaded from `domains/<name>/domain.yaml`.

Everything specific to one business (credit, claims, payments) lives in that file and the
files it names; the generic stages only ever read a `DomainConfig`. Validation happens at
load time so a bad declaration fails with the file and field named, before any data moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hitl_gate.core.lawful import (
    FairnessLimits,
    LeakageLimits,
    ProtectedAttribute,
    undeclared_protected,
)
from hitl_gate.core.yaml_files import load_model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOMAINS_DIR = PROJECT_ROOT / "domains"

RetentionClass = Literal["regulatory_7y", "standard_5y", "operational_2y"]
ColumnType = Literal["str", "int", "float", "bool", "datetime", "date"]
FileFormat = Literal["csv", "tsv", "csv.gz", "tsv.gz", "parquet", "jsonl"]
DEFAULT_FILE_FORMATS: tuple[FileFormat, ...] = ("csv", "parquet", "jsonl")
# A case id after NFKC and trimming: ASCII letters and digits, then also '_', '.', '-'. The
# same alphabet review batches and verdict files accept (review/canonical.py SAFE_ID_RE).
DEFAULT_CASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"


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
    # Landing file formats read for this contract; any other format is refused, recorded.
    formats: tuple[FileFormat, ...] = DEFAULT_FILE_FORMATS

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


class ApplicantHistoryConfig(_Strict):
    """Optional applicant-history features: what this applicant's earlier cases looked like.

    `key` is a contract column holding a stable applicant id (declare it only when the source
    really has one: a key guessed from look-alike fields links different people). Each case
    gets the count, summed `amount` and days since the latest of the same applicant's cases
    strictly before its decision time and at most `window_days` earlier (features/history.py).
    A case whose key is null gets nulls (unknown), not zeros.
    """

    key: str
    entity: str = "applicant"
    view: str
    amount: str
    window_days: int = Field(default=365, gt=0)

    @property
    def names(self) -> list[str]:
        """The served history features, named after the window."""
        w = self.window_days
        return [f"prior_applications_{w}d", f"prior_amount_{w}d", "days_since_prior_application"]


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
    applicant_history: ApplicantHistoryConfig | None = None

    @property
    def application_names(self) -> list[str]:
        """The features of the case itself (the application view), in a stable order."""
        return [*self.passthrough, *self.derived]

    @property
    def names(self) -> list[str]:
        """Every served feature: the application view, then applicant history if declared."""
        history = self.applicant_history.names if self.applicant_history else []
        return [*self.application_names, *history]


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


class MonitoringConfig(_Strict):
    """Thresholds of the blocking checks around scoring (input completeness, score drift).

    `max_missing_share`: the largest share of cases allowed without a value for one model
    feature (imputation hides a broken feed otherwise). `max_psi`: the largest population
    stability index of today's PDs against the training PDs; PSI over a handful of cases is
    noise, so the check only blocks from `min_cases_for_psi` scored cases on.
    """

    max_missing_share: float = Field(default=0.25, ge=0, le=1)
    max_psi: float = Field(default=0.25, gt=0)
    min_cases_for_psi: int = Field(default=200, ge=1)


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
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    # When training refuses to promote a version on its own (models/leakage.py).
    leakage: LeakageLimits = Field(default_factory=LeakageLimits)


class ReviewConfig(_Strict):
    """What reviewers see and may answer."""

    context_columns: list[str]
    verdicts: list[str] = Field(default_factory=lambda: ["approve", "decline"])
    batch_size: int = 200
    sla_hours: int = 48
    # Reviewers, roles, queues, masking: a file beside domain.yaml (hitl_gate/review/settings.py)
    settings: str | None = None


class RetentionConfig(_Strict):
    """How long each class of personal data is kept, in months after its partition day.

    `hitl retention apply` removes what is older (hitl_gate/audit/retention.py). Audit records (the
    lineage tables, the chain, checkpoints) are not a class here: they are kept for the
    domain's `retention_class` and hold ids and hashes, not raw inputs. No class may be
    shorter than `legal_minimum_months` (25 by default: ECOA/Regulation B keeps credit
    application records 25 months); a declaration that tries is refused when it is loaded.
    """

    legal_minimum_months: int = Field(default=25, ge=1)
    raw_inputs_months: int = 25  # landing files and stored partitions holding input columns
    reviewer_files_months: int = 25  # exported review batches and returned verdict files
    quarantined_values_months: int = 25  # offending raw values kept in `quarantine`

    def months(self) -> dict[str, int]:
        """Months kept per data class (`raw_inputs`, `reviewer_files`, `quarantined_values`)."""
        return {
            "raw_inputs": self.raw_inputs_months,
            "reviewer_files": self.reviewer_files_months,
            "quarantined_values": self.quarantined_values_months,
        }

    @model_validator(mode="after")
    def _not_below_legal_minimum(self) -> RetentionConfig:
        short = {k: v for k, v in self.months().items() if v < self.legal_minimum_months}
        if short:
            raise ValueError(
                f"retention shorter than legal_minimum_months ({self.legal_minimum_months}): "
                + ", ".join(f"{k}_months = {v}" for k, v in short.items())
            )
        return self


class SampleCaseId(_Strict):
    """How a sample row gets its case id: a source column, or the 1-based row number.

    The id is `prefix` + the value, zero-padded to `width` characters (0 = no padding).
    """

    column: str | None = None
    prefix: str = ""
    width: int = Field(default=0, ge=0)


class SampleEventTime(_Strict):
    """How a sample row gets its decision time, deterministically (seeded, same every run).

    `period: exact` takes `column` as the decision time. `day` / `month` take `column` (text
    parsed with `format`, or a date) as the start of a period and spread the cases over it;
    without `column`, cases are spread over `start..end` inclusive. Within a day, times fall
    between `hours[0]` and `hours[1]` o'clock.
    """

    column: str | None = None
    format: str | None = None
    period: Literal["exact", "day", "month", "range"] = "range"
    start: date | None = None
    end: date | None = None
    seed: int = 0
    hours: tuple[int, int] = (8, 20)

    @model_validator(mode="after")
    def _source_of_time(self) -> SampleEventTime:
        if self.period == "range":
            if self.start is None or self.end is None or self.end < self.start:
                raise ValueError("period 'range' needs start <= end")
        elif self.column is None:
            raise ValueError(f"period '{self.period}' needs a column")
        if not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise ValueError("hours must satisfy 0 <= first < second <= 24")
        return self


class SampleConfig(_Strict):
    """Historical cases with outcomes, turned into a landing zone by `hitl demo` (generic code).

    `source` (Parquet or CSV) is relative to the domain root. Contract columns are landed as
    one CSV per day; `outcome_columns` (the label and anything known only later) go to one
    outcomes file, which only training reads.
    """

    source: str
    case_id: SampleCaseId = Field(default_factory=SampleCaseId)
    event_time: SampleEventTime
    outcome_columns: list[str] = Field(default_factory=list)
    outcomes_file: str = "outcomes.csv"


class DataWindow(_Strict):
    """The days a domain has cases for: its daily partitions run from `start` through `end`.

    A historical sample declares both (the days its data covers), so the Dagster UI counts and
    offers exactly those days ("Materialize all" asks for the real days, not every day since
    `start`). A live domain leaves `end` out: its partitions run up to today.
    """

    start: date
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DataWindow:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"data_window.end {self.end} is before data_window.start {self.start}")
        return self

    def contains(self, day: date) -> bool:
        """Whether `day` is inside the window (any day from `start` on when `end` is open)."""
        return self.start <= day and (self.end is None or day <= self.end)


def _check_id_pattern(pattern: str) -> str:
    """A case id pattern both regex engines (Python `re`, Polars' Rust `regex`) accept.

    Write it with explicit ASCII classes (`[0-9]`, not `\\d`): the Rust engine's `\\d` and
    `\\w` match any Unicode digit or letter, which would let look-alikes through. Checked
    without running Polars: domains load when the code location is imported, and a Polars
    computation there starts its thread pool in the process Dagster's multiprocess executor (a
    forkserver) forks steps from, which then deadlock on their first Polars call.
    """
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"case_id_pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from exc
    for construct in ("(?=", "(?!", "(?<=", "(?<!", "\\1", "(?P="):
        if construct in pattern:
            raise ValueError(
                f"case_id_pattern {pattern!r} uses {construct}, which Polars' regex engine does "
                "not support (no look-around, no back-references)"
            )
    for shorthand in ("\\d", "\\w", "\\s", "\\D", "\\W", "\\S"):
        if shorthand in pattern:
            raise ValueError(
                f"case_id_pattern {pattern!r} uses {shorthand}, which matches Unicode look-alikes"
                " in the Rust regex engine; write an explicit ASCII class such as [0-9]"
            )
    return pattern


class DomainConfig(_Strict):
    """A decision domain: inputs, contract, features, model, policy and review settings.

    `case_id_pattern` is what a case id must look like once canonical (Unicode NFKC, trimmed),
    matched in full; ids outside it (zero-width, control or look-alike characters) are
    quarantined, never normalised into another case's id (quality/case_ids.py).
    `landing_marker` names a completion marker file (e.g. `_SUCCESS`): when declared, a day
    folder's files are taken only once it is there and they are older than it; otherwise a
    file is complete once its size and mtime are stable over the settle interval.
    """

    name: str
    description: str
    case_id: str
    case_id_pattern: str = DEFAULT_CASE_ID_PATTERN
    landing_marker: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    event_time: str
    landing_subdir: str
    outcomes_subdir: str
    data_window: DataWindow
    contract: ContractConfig
    features: FeatureConfig
    model: ModelConfig
    policy: str  # path relative to the project root, e.g. policies/consumer_credit/v1.yaml
    # Expectation suites file, relative to the domain folder (hitl_gate/quality/expectations.py).
    expectations: str | None = None
    review: ReviewConfig
    # How long this domain's decision records must be kept (see docs/onboarding.md):
    # regulatory_7y (credit: adverse action and fair lending), standard_5y, operational_2y.
    retention_class: RetentionClass = "regulatory_7y"
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    sample: SampleConfig | None = None
    # Columns kept only for fairness monitoring (hitl_gate/core/lawful.py, docs/compliance.md).
    protected_attributes: dict[str, ProtectedAttribute] = Field(default_factory=dict)
    fairness: FairnessLimits = Field(default_factory=FairnessLimits)
    source_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _columns_exist(self) -> DomainConfig:
        _check_id_pattern(self.case_id_pattern)
        cols = self.contract.columns
        for required in (self.case_id, self.event_time):
            if required not in cols:
                raise ValueError(f"'{required}' must be declared in contract.columns")
        missing = [f for f in self.features.passthrough if f not in cols]
        if missing:
            raise ValueError(f"features.passthrough names undeclared columns: {missing}")
        history = self.features.applicant_history
        if history is not None:
            absent = [c for c in (history.key, history.amount) if c not in cols]
            if absent:
                raise ValueError(f"features.applicant_history names undeclared columns: {absent}")
        unknown = [f for f in self.model.features if f not in self.features.names]
        if unknown:
            raise ValueError(f"model.features not served by the feature view: {unknown}")
        uncoded = [f for f in self.model.features if f not in self.model.reason_codes]
        if uncoded:
            raise ValueError(f"model.features without a reason code: {uncoded}")
        if self.sample is not None:
            leaked = [c for c in self.sample.outcome_columns if c in cols]
            if leaked:
                raise ValueError(f"sample.outcome_columns must not be contract columns: {leaked}")
        return self

    @model_validator(mode="after")
    def _protected_declared(self) -> DomainConfig:
        unknown = undeclared_protected(self.protected_attributes, dict(self.contract.columns))
        if unknown:
            raise ValueError(f"protected_attributes name columns not in the contract: {unknown}")
        return self

    @property
    def root(self) -> Path:
        """The folder holding `domains/` and `policies/` for this declaration.

        A declaration loaded from `<root>/domains/<name>/domain.yaml` resolves its files
        against `<root>`; one built in memory resolves them against the project.
        """
        if self.source_dir.name:
            return self.source_dir.resolve().parent.parent
        return PROJECT_ROOT

    @property
    def policy_path(self) -> Path:
        """Absolute path of the domain's active policy file."""
        return (self.root / self.policy).resolve()

    def resolve(self, relative: str) -> Path:
        """A path of the declaration (policy, sample source), absolute."""
        return (self.root / relative).resolve()


class DomainConfigError(ValueError):
    """A domain declaration that cannot be loaded, with the file named."""


def load_domain_file(path: Path) -> DomainConfig:
    """Load and validate one `domain.yaml`; errors name the file and the field."""
    return load_model(
        path, DomainConfig, "domain declaration", DomainConfigError, source_dir=path.parent
    )


def domain_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """Folders searched for `<name>/domain.yaml`: shipped `domains/`, then `extra`.

    `extra` is the deployment's `HITL_DOMAINS_DIR` (`HitlSettings.domains_dirs`).
    """
    return list(dict.fromkeys([DOMAINS_DIR, *(Path(p).resolve() for p in extra)]))


def domain_files(extra: Sequence[Path] = ()) -> dict[str, Path]:
    """Every declared domain and its file; a name declared twice is an error naming both."""
    found: dict[str, Path] = {}
    for folder in domain_dirs(extra):
        for path in sorted(folder.glob("*/domain.yaml")):
            name = path.parent.name
            if name in found:
                raise DomainConfigError(f"domain '{name}' is declared twice: {found[name]}, {path}")
            found[name] = path
    return found


def load_domain(name: str, extra: Sequence[Path] = ()) -> DomainConfig:
    """Load domain `name` from `<domains dir>/<name>/domain.yaml`, cached until the file changes."""
    files = domain_files(extra)
    if name not in files:
        raise DomainConfigError(
            f"no domain '{name}' in {[str(d) for d in domain_dirs(extra)]}; "
            f"declared: {sorted(files) or 'none'}"
        )
    path = files[name]
    return _load_cached(path, path.stat().st_mtime_ns)


@cache
def _load_cached(path: Path, mtime_ns: int) -> DomainConfig:
    return load_domain_file(path)


def available_domains(extra: Sequence[Path] = ()) -> list[str]:
    """Names of every declared domain (shipped and in the `extra` folders)."""
    return sorted(domain_files(extra))

"""`hitl domain check`: every problem of a domain's declarations, found before data moves.

Loading already validates the declaration's shape (pydantic names the field). This adds the
checks that need more than one file: the policy against the columns a case will really have
(contract, features, scores), derived features against the contract, the review context, the
risk bands, the sample file, and clashes with the other declared domains (landing folders,
Feast object names and model names are shared namespaces). Each problem is one line naming the
file and the field, so a team fixes its declarations in one pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import polars as pl

from hitl_gate.core.domain import DomainConfig, DomainConfigError, domain_files, load_domain_file
from hitl_gate.core.protected import (
    expression_columns,
    protected_columns,
    tainted_columns,
    tainted_features,
)
from hitl_gate.quality.contract import polars_dtype

_NUMERIC_TYPES = ("int", "float", "bool")


def case_schema(domain: DomainConfig) -> dict[str, pl.DataType]:
    """The columns of a routed case: contract inputs, features and scores, as typed at routing."""
    from features.engineering import feature_frame_schema
    from models.scoring import SCORE_SCHEMA

    schema = {name: polars_dtype(col) for name, col in domain.contract.columns.items()}
    schema.update(feature_frame_schema(domain))
    schema.update(SCORE_SCHEMA)
    return schema


def feature_problems(domain: DomainConfig, where: str) -> list[str]:
    """Derived features that do not parse or evaluate over the contract; non-numeric passthrough."""
    problems = []
    columns = domain.contract.columns
    for name in domain.features.passthrough:
        if columns[name].type not in _NUMERIC_TYPES:
            problems.append(
                f"{where}: features.passthrough '{name}' is {columns[name].type}; features are "
                "numbers (write a derived SQL expression for text)"
            )
    empty = pl.DataFrame(schema={n: polars_dtype(c) for n, c in columns.items()})
    for name, sql in domain.features.derived.items():
        label = f"{where}: features.derived '{name}'"
        try:
            expr = pl.sql_expr(sql)
        except Exception as exc:  # Polars raises several types for bad SQL
            problems.append(f"{label}: does not parse: {_first_line(exc)}")
            continue
        unknown = sorted(set(expr.meta.root_names()) - set(columns))
        if unknown:
            problems.append(f"{label}: uses columns not in the contract: {unknown}")
            continue
        try:
            empty.select(expr.cast(pl.Float64))
        except Exception as exc:  # type errors surface as several Polars types
            problems.append(f"{label}: cannot be computed as a number: {_first_line(exc)}")
    clash = sorted(set(domain.features.derived) & set(columns))
    if clash:
        problems.append(f"{where}: features.derived reuse contract column names: {clash}")
    return problems


def model_problems(domain: DomainConfig, where: str) -> list[str]:
    """Bands ascending within (0, 1] and ending at 1; distinct reason codes; label not an input."""
    model = domain.model
    problems = []
    bounds = list(model.bands.values())
    if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        problems.append(f"{where}: model.bands must be strictly ascending: {model.bands}")
    if bounds and (bounds[0] <= 0 or bounds[-1] != 1.0):
        problems.append(f"{where}: model.bands must lie in (0, 1] and the last must be 1.0")
    codes = [r.code for r in model.reason_codes.values()]
    doubled = sorted({c for c in codes if codes.count(c) > 1})
    if doubled:
        problems.append(f"{where}: model.reason_codes reuse codes {doubled}")
    if model.label.column in domain.contract.columns:
        problems.append(
            f"{where}: model.label.column '{model.label.column}' is a contract column; outcomes "
            "arrive after the decision and belong in the outcomes files"
        )
    return problems


def policy_problems_for(domain: DomainConfig) -> list[str]:
    """The policy file loads and every rule is a boolean condition over the case columns."""
    from policies.engine import PolicyError, load_policy, validate_policy

    path = domain.policy_path
    if not path.is_file():
        return [f"{domain.source_dir / 'domain.yaml'}: policy file not found: {path}"]
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return str(exc).splitlines()
    return validate_policy(policy, case_schema(domain))


def protected_problems(domain: DomainConfig, where: str) -> list[str]:
    """Protected attributes or declared proxies used as a model feature, reason or policy input.

    Regulation B 1002.6(b) forbids these bases in a credit decision, so the domain may keep them
    only to measure fairness. A derived feature computed from one counts as using it, and a
    policy rule over such a feature does too.
    """
    from policies.engine import PolicyError, load_policy
    from policies.model import policy_columns

    tainted = tainted_columns(domain)
    if not tainted:
        return []
    via = tainted_features(domain)
    problems = []
    for name in domain.model.features:
        if name in tainted:
            uses = f" (computed from {via[name]})" if via.get(name, [name]) != [name] else ""
            problems.append(
                f"{where}: model.features '{name}' uses a protected attribute or proxy{uses}"
            )
    for name, reason in domain.model.reason_codes.items():
        if name in tainted:
            problems.append(
                f"{where}: model.reason_codes '{name}' ({reason.code}) would cite a protected "
                "attribute or proxy on adverse-action notices"
            )
    problems += reviewer_exposure(domain, where)
    path = domain.policy_path
    if not path.is_file():
        return problems  # policy_problems_for reports it
    try:
        policy = load_policy(path)
    except PolicyError:
        return problems
    for rule in policy.rules:
        used = sorted(expression_columns(rule.when) & tainted)
        if used:
            problems.append(
                f"{path}: rule '{rule.id}' conditions on protected attributes or proxies {used}"
            )
    used = sorted(set(policy_columns(policy)) & tainted)
    if used:
        problems.append(f"{path}: qa_sampling / capacity_order use protected columns {used}")
    return problems


def reviewer_exposure(domain: DomainConfig, where: str) -> list[str]:
    """Protected columns in the review context that some role would see by default.

    A reviewer may see a protected attribute only when the role is granted it: an explicit
    `show` for that column in the role's `masking` (review.yaml). Every other role must drop,
    generalise or pseudonymise it; a role that says nothing would see it as it is.
    """
    from hitl_gate.review.settings import ReviewSettingsError, review_settings

    shown = [c for c in protected_columns(domain) if c in domain.review.context_columns]
    if not shown:
        return []
    try:
        settings = review_settings(domain)
    except ReviewSettingsError:
        return []  # the review settings' own loading reports it
    roles = sorted(settings.roles) if settings is not None else ["(every reviewer)"]
    problems = []
    for role in roles:
        rules = settings.masking_for(role) if settings is not None else {}
        exposed = [c for c in shown if c not in rules]
        if exposed:
            problems.append(
                f"{where}: review.context_columns show protected columns {exposed} to role "
                f"'{role}' without a masking rule (drop them, or grant with an explicit `show`)"
            )
    return problems


def review_problems(domain: DomainConfig, where: str) -> list[str]:
    """Review context columns must exist on a routed case; verdicts must be distinct."""
    schema = case_schema(domain)
    unknown = [c for c in domain.review.context_columns if c not in schema]
    problems = []
    if unknown:
        problems.append(f"{where}: review.context_columns not on a case: {unknown}")
    if len(set(domain.review.verdicts)) != len(domain.review.verdicts):
        problems.append(f"{where}: review.verdicts repeat a value")
    return problems


def sample_problems(domain: DomainConfig, where: str) -> list[str]:
    """The sample file exists and has every column the landing needs."""
    sample = domain.sample
    if sample is None:
        return []
    source = domain.resolve(sample.source)
    if not source.is_file():
        return [f"{where}: sample.source not found: {source}"]
    try:
        present = set(_source_columns(source))
    except (OSError, pl.exceptions.PolarsError) as exc:
        return [f"{where}: sample.source cannot be read: {_first_line(exc)}"]
    generated = {domain.case_id, domain.event_time}
    needed = [c for c in domain.contract.columns if c not in generated]
    needed += [domain.model.label.column, *sample.outcome_columns]
    needed += [c for c in (sample.case_id.column, sample.event_time.column) if c]
    missing = sorted({c for c in needed if c not in present})
    if missing:
        return [f"{where}: sample.source {source.name} lacks columns {missing}"]
    return window_problems(domain, where)


def window_problems(domain: DomainConfig, where: str) -> list[str]:
    """The sample's days lie inside `data_window`: a day outside it would land and never run."""
    from hitl_gate.app.demo_data import sample_applications

    days = sample_applications(domain)[domain.event_time].dt.date()
    first, last = days.min(), days.max()
    window = domain.data_window
    if not isinstance(first, date) or not isinstance(last, date):
        return []  # an empty sample: nothing lands
    if window.contains(first) and window.contains(last):
        return []
    return [
        f"{where}: data_window {window.start}..{window.end or 'open'} leaves out the sample's "
        f"days {first}..{last}"
    ]


def _source_columns(source: Path) -> list[str]:
    if source.suffix.lower() == ".parquet":
        return list(pl.read_parquet_schema(source))
    return list(pl.scan_csv(source).collect_schema())


def clash_problems(domain: DomainConfig, others: Mapping[str, DomainConfig], where: str):
    """Names other domains already use in the shared landing zone, Feast registry and MLflow."""

    def claims(d: DomainConfig) -> dict[str, str]:
        return {
            "landing_subdir": d.landing_subdir,
            "outcomes_subdir": d.outcomes_subdir,
            "features.entity": d.features.entity,
            "features.view": d.features.view,
            "features.service": d.features.service,
            "model.name": d.model.name,
        }

    mine = claims(domain)
    problems = []
    for other_name, other in others.items():
        theirs = set(claims(other).values())
        for field, value in mine.items():
            if value in theirs:
                problems.append(f"{where}: {field} '{value}' is already used by '{other_name}'")
    folders = [Path(domain.landing_subdir), Path(domain.outcomes_subdir)]
    if folders[0] == folders[1] or folders[0] in folders[1].parents:
        problems.append(f"{where}: landing_subdir and outcomes_subdir must be separate folders")
    return problems


def check_domain(name: str, extra_dirs: Sequence[Path] = ()) -> list[str]:
    """Every problem of domain `name` (declared in `domains/` or `extra_dirs`); [] means ready."""
    files = domain_files(extra_dirs)
    if name not in files:
        return [f"no domain '{name}' declared (found: {sorted(files) or 'none'})"]
    where = str(files[name])
    try:
        domain = load_domain_file(files[name])
    except DomainConfigError as exc:
        return [str(exc)]
    others = {}
    for other, path in files.items():
        if other != name:
            try:
                others[other] = load_domain_file(path)
            except DomainConfigError:
                continue  # its own check reports it
    return [
        *feature_problems(domain, where),
        *model_problems(domain, where),
        *protected_problems(domain, where),
        *policy_problems_for(domain),
        *review_problems(domain, where),
        *sample_problems(domain, where),
        *clash_problems(domain, others, where),
    ]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

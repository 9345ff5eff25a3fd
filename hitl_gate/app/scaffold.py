"""`hitl domain init`: starter declarations inferred from a sample of historical cases.

A domain team starts from a CSV or Parquet file of past cases with their outcomes. From it we
infer what a first declaration can safely say: the data contract (types, nullability from the
observed nulls, ranges widened by a margin, allowed values of low-cardinality text), the case
id and decision time, numeric features, a model section with reason codes whose risk direction
follows the observed outcome, risk bands around the observed bad rate, a band-based starter
policy and a review context. Everything written is plain YAML for the team to review and edit;
no Python is generated or needed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hitl_gate.app.demo_data import read_source
from hitl_gate.app.scaffold_ids import plan_case_ids
from hitl_gate.app.scaffold_screen import (
    leak_reason,
    one_hot,
    propose_protected,
    sentinel_codes,
    without_sentinels,
)
from hitl_gate.core.domain import PROJECT_ROOT
from hitl_gate.core.lawful import LeakageLimits

# Text columns with at most this many distinct values get an `allowed` list.
MAX_ALLOWED_VALUES = 20
# Ranges are widened by this share of the observed span on each side.
RANGE_MARGIN = 0.1
MAX_MODEL_FEATURES = 15
MAX_CONTEXT_COLUMNS = 10
BAND_NAMES = ("A", "B", "C", "D", "E")
BAND_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0)  # upper bounds as multiples of the observed bad rate
MAX_BAND_BOUND = 0.9
VALIDATION_SHARE = 0.75  # the latest quarter of the history validates the first model
ID_NAME = re.compile(r"(^|_)(id|key|ref|reference|number|no)$", re.IGNORECASE)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_DTYPE_TYPES: tuple[tuple[type[pl.DataType], str], ...] = (
    (pl.Boolean, "bool"),
    (pl.Datetime, "datetime"),
    (pl.Date, "date"),
)


class ScaffoldError(ValueError):
    """The sample or the options cannot produce a declaration; the message says why."""


@dataclass(frozen=True)
class ScaffoldOptions:
    """What `hitl domain init` was told; everything else is inferred from the sample."""

    name: str
    source: Path
    label: str
    positive: list[str]
    case_id: str | None = None
    event_time: str | None = None
    outcomes: list[str] = field(default_factory=list)
    owner: str | None = None
    start: date = date(2024, 1, 1)
    days: int = 90
    seed: int = 0
    # Share of cases the starter policy should send to review (None: bands by bad-rate multiples).
    review_share: float | None = None


@dataclass(frozen=True)
class Scaffold:
    """The files written and what was inferred, for the command to report."""

    domain_file: Path
    policy_file: Path
    case_id: str
    event_time: str
    columns: int
    features: list[str]
    positive_rate: float
    # What screening decided for the owner to confirm (leaks, protected columns, sentinels).
    notes: list[str] = field(default_factory=list)


def column_type(dtype: pl.DataType) -> str:
    """The contract type of an observed Polars type."""
    for kind, name in _DTYPE_TYPES:
        if isinstance(dtype, kind):
            return name
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    return "str"


def _nice(value: float, up: bool) -> float:
    """Round outwards to two significant digits, so limits read like decisions, not data."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    rounded = (math.ceil if up else math.floor)(value / step) * step
    return float(round(rounded, 10))


def numeric_range(values: pl.Series) -> tuple[float | None, float | None]:
    """Observed range widened by a margin; a non-negative column stays non-negative."""
    lo, hi = as_number(values.min()), as_number(values.max())
    if lo is None or hi is None:
        return None, None
    margin = max((hi - lo) * RANGE_MARGIN, abs(hi) * RANGE_MARGIN, 1.0)
    low = 0.0 if lo >= 0 else _nice(lo - margin, up=False)
    return low, _nice(hi + margin, up=True)


def as_number(value: object) -> float | None:
    """A numeric column's minimum or maximum as a float; None for an empty or all-null column.

    Polars types `Series.min()` as any Python literal; the callers only ask numeric columns.
    """
    if value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}: {value!r}")


def _is_row_number(column: pl.Series, rows: int) -> bool:
    """An integer column running 1..n or 0..n-1 (as R and pandas exports carry)."""
    if not column.dtype.is_integer():
        return False
    lo, hi = as_number(column.min()), as_number(column.max())
    return lo is not None and hi is not None and hi - lo == rows - 1


def infer_column(values: pl.Series, *, unique: bool = False) -> dict[str, Any]:
    """One contract column: type, nullability from observed nulls, range or allowed values."""
    kind = column_type(values.dtype)
    spec: dict[str, Any] = {"type": kind, "nullable": values.null_count() > 0}
    if unique:
        spec["unique"] = True
    if kind in ("int", "float"):
        low, high = numeric_range(values)
        if low is not None:
            spec["min"], spec["max"] = low, high
    elif kind == "str" and not unique:
        distinct = values.drop_nulls().unique()
        if 0 < distinct.len() <= MAX_ALLOWED_VALUES and distinct.len() < values.len() / 2:
            spec["allowed"] = sorted(distinct.to_list())
    spec["description"] = f"{values.null_count()} nulls in {values.len()} sample rows"
    return spec


def detect_case_id(frame: pl.DataFrame) -> str | None:
    """A column that names each case once: id-like name, no nulls, every value distinct."""
    candidates = [
        c
        for c in frame.columns
        if frame[c].null_count() == 0
        and frame[c].n_unique() == frame.height
        and (frame[c].dtype == pl.String or frame[c].dtype.is_integer())
    ]
    named = [c for c in candidates if ID_NAME.search(c)]
    # A row number (1..n or 0..n-1, as R and pandas exports carry) names each case too.
    numbered = [c for c in candidates if _is_row_number(frame[c], frame.height)]
    texts = [c for c in candidates if frame[c].dtype == pl.String]
    found = named or numbered or texts
    return found[0] if found else None


def detect_event_time(frame: pl.DataFrame) -> str | None:
    """The first datetime or date column without nulls (text that parses as ISO counts too)."""
    for name in frame.columns:
        values = frame[name]
        if values.null_count():
            continue
        if isinstance(values.dtype, pl.Datetime | pl.Date):
            return name
    return None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug if slug and slug[0].isalpha() else f"v_{slug}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def starter_features(
    frame: pl.DataFrame, inputs: list[str]
) -> tuple[list[str], dict[str, str], dict[str, tuple[str, str | None]]]:
    """(passthrough, derived, what each feature says) from the screened inputs.

    Numbers and booleans pass through, or, when they use sentinel codes (999 = unknown), become
    a derived feature reading those codes as missing; text with a few values becomes one 0/1
    indicator per value (the most frequent is the reference). The third item maps each
    feature to (source column, text value or None), for its reason text.
    """
    passthrough: list[str] = []
    derived: dict[str, str] = {}
    says: dict[str, tuple[str, str | None]] = {}
    for name in inputs:
        values = frame[name]
        kind = column_type(values.dtype)
        if values.n_unique() <= 1:
            continue
        if kind in ("int", "float", "bool"):
            codes = sentinel_codes(values) if kind != "bool" else []
            if codes:
                derived[f"{name}_known"] = without_sentinels(name, codes)
                says[f"{name}_known"] = (name, None)
            else:
                passthrough.append(name)
                says[name] = (name, None)
        elif kind == "str":
            for feature, (sql, level) in one_hot(name, values).items():
                derived[feature] = sql
                says[feature] = (name, level)
    return passthrough, derived, says


def reason_text(column: str, level: str | None, risk_higher: bool) -> str:
    """A first plain-language reason; generated from the column name, so the owner rewrites it."""
    label = column.replace("_", " ").strip().capitalize()
    if level is not None:
        return f"{label} is {level}" if risk_higher else f"{label} is not {level}"
    return f"{label} too {'high' if risk_higher else 'low'}"


def _feature_values(frame: pl.DataFrame, passthrough: list[str], derived: dict[str, str]):
    return frame.select(
        *[pl.col(n).cast(pl.Float64) for n in passthrough],
        *[pl.sql_expr(sql).cast(pl.Float64).alias(n) for n, sql in derived.items()],
    )


def model_section(
    features: pl.DataFrame,
    label: pl.Series,
    options: ScaffoldOptions,
    validation_from: date,
    says: dict[str, tuple[str, str | None]] | None = None,
) -> dict[str, Any]:
    """Features ranked by correlation with the outcome; direction and bands from the sample."""
    ranked = []
    for name in features.columns:
        corr = (
            pl.DataFrame({"x": features[name], "y": label}).drop_nulls().select(pl.corr("x", "y"))
        )
        value = corr.item() if corr.height else None
        if value is not None and math.isfinite(value):
            ranked.append((abs(value), name, value))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    chosen = [(name, value) for _, name, value in ranked[:MAX_MODEL_FEATURES]]
    if not chosen:
        raise ScaffoldError("no numeric feature varies with the outcome: nothing to model")
    rate = as_number(label.mean()) or 0.0
    bounds = sorted({round(min(rate * m, MAX_BAND_BOUND), 4) for m in BAND_MULTIPLIERS} - {0.0})
    bands = dict(zip(BAND_NAMES, [*bounds, 1.0], strict=False))
    reason_codes = {
        name: {
            "code": f"R{i:02d}",
            "text": reason_text(*(says or {}).get(name, (name, None)), risk_higher=v > 0),
            "risk_direction": "higher" if v > 0 else "lower",
        }
        for i, (name, v) in enumerate(chosen, start=1)
    }
    return {
        "name": f"{options.name}_risk",
        "features": [name for name, _ in chosen],
        "label": {
            "column": options.label,
            "positive_values": options.positive,
            "description": (
                f"Bad outcome: {options.label} in {options.positive} "
                f"({int(label.sum())} of {label.len()} sample cases). Review this definition."
            ),
        },
        "validation_from": validation_from.isoformat(),
        "bands": bands,
        "reason_codes": reason_codes,
    }


def starter_policy(name: str, owner: str, start: date, bands: list[str]) -> dict[str, Any]:
    """Band-based routing: decline the top band, approve the two lowest, review the rest."""
    queue = f"{name}_review"
    top, low = bands[-1], bands[:2]
    middle = bands[2:-1]
    rules: list[dict[str, Any]] = [
        {
            "id": "DEC-TOP-BAND",
            "text": f"Predicted risk is in the top band {top}.",
            "when": f"risk_band = {_sql_text(top)}",
            "outcome": "auto_decline",
            "reason_code": "D01",
        },
        {
            "id": "REV-MISSING-SCORE",
            "text": "The case has no score or band, so it cannot be decided automatically.",
            "when": "pd IS NULL OR risk_band IS NULL",
            "outcome": "human_review",
            "reason_code": "H01",
            "queue": queue,
            "priority": 2,
        },
    ]
    rules += [
        {
            "id": f"REV-BAND-{band}",
            "text": f"Predicted risk is band {band}.",
            "when": f"risk_band = {_sql_text(band)}",
            "outcome": "human_review",
            "reason_code": f"H{i:02d}",
            "queue": queue,
            "priority": 2 if i == 2 else 3,
        }
        for i, band in enumerate(reversed(middle), start=2)
    ]
    rules.append(
        {
            "id": "APP-LOW-RISK",
            "text": f"Predicted risk is band {' or '.join(low)} and no other rule applies.",
            "when": "risk_band IN (" + ", ".join(_sql_text(b) for b in low) + ")",
            "outcome": "auto_approve",
            "reason_code": "A01",
        }
    )
    return {
        "version": f"{name}-v1",
        "owner": owner,
        "effective_date": start.isoformat(),
        "description": (
            "Starter policy generated by `hitl domain init`: decline the top risk band, review "
            "the middle bands, approve the lowest two. Tune it with the measured route rates."
        ),
        "default_outcome": "human_review",
        "default_reason_code": "H99",
        "default_queue": queue,
        "default_priority": 3,
        "rules": rules,
    }


def starter_policy_cases(policy: dict[str, Any], bands: list[str]) -> dict[str, Any]:
    """Test cases for `starter_policy` (`v1.cases.yaml`), so `hitl policy test` passes on a new
    domain and its policy can be activated.

    The expectations are written from the starter's intent (top band declined, middle bands
    reviewed, the lowest two approved, a missing score reviewed; decline beats review beats
    approve), not by running the engine: a policy edited away from that intent fails them.
    """
    queue, top, low = policy["default_queue"], bands[-1], bands[:2]
    rules = {r["id"]: r for r in policy["rules"]}

    def fired(band: str | None) -> list[str]:
        """The starter's rules that fire for a band (None: no score and no band), file order."""
        hits = {"REV-MISSING-SCORE"} if band is None else {f"REV-BAND-{band}"}
        hits |= {"DEC-TOP-BAND"} if band == top else set()
        hits |= {"APP-LOW-RISK"} if band in low else set()
        return [rule_id for rule_id in rules if rule_id in hits]

    def expect(rule_ids: list[str]) -> dict[str, Any]:
        """Decline beats review beats approve; a review names its queue and priority."""
        rank = {"auto_decline": 0, "human_review": 1, "auto_approve": 2}
        deciding = min(rule_ids, key=lambda rule_id: rank[rules[rule_id]["outcome"]])
        rule = rules[deciding]
        route = {"route": rule["outcome"], "reason_code": rule["reason_code"], "rule": deciding}
        if rule["outcome"] == "human_review":
            route |= {"queue": queue, "priority": rule["priority"]}
        return {**route, "rules_fired": rule_ids}

    cases = [
        {"name": f"band {band}", "case": {"risk_band": band}, "expect": expect(fired(band))}
        for band in bands
    ]
    no_score = fired(None)
    for band in (None, low[0], top):
        both = [r for r in rules if r in {*no_score, *fired(band)}]
        cases.append(
            {
                "name": f"no score, band {band}" if band else "no score and no band",
                "case": {"pd": None, "risk_band": band},
                "expect": expect(both),
            }
        )
    return {"defaults": {"pd": 0.01, "risk_band": low[0]}, "cases": cases}


def _event_time_plan(
    frame: pl.DataFrame, options: ScaffoldOptions
) -> tuple[str, dict[str, Any], pl.Series]:
    """(event time column name, sample.event_time section, each case's decision date)."""
    column = options.event_time or detect_event_time(frame)
    if column is None:
        end = options.start + timedelta(days=options.days - 1)
        spec = {
            "period": "range",
            "start": options.start.isoformat(),
            "end": end.isoformat(),
            "seed": options.seed,
        }
        offsets = pl.int_range(0, frame.height, eager=True) * options.days // max(frame.height, 1)
        days = pl.Series([options.start + timedelta(days=int(o)) for o in offsets], dtype=pl.Date)
        return "decision_time", spec, days
    if column not in frame.columns:
        raise ScaffoldError(f"{options.source}: no column '{column}' for the event time")
    values = frame[column]
    if values.dtype == pl.String:
        values = values.str.to_datetime(strict=False)
    if not isinstance(values.dtype, pl.Datetime | pl.Date) or values.null_count():
        raise ScaffoldError(f"{options.source}: column '{column}' is not a complete date or time")
    period = "exact" if isinstance(values.dtype, pl.Datetime) else "day"
    return column, {"column": column, "period": period, "seed": options.seed}, values.cast(pl.Date)


def _source_reference(source: Path, root: Path) -> str:
    """The sample path as the declaration names it: relative to the root when inside it."""
    resolved = source.resolve()
    try:
        return str(resolved.relative_to(root.resolve()))
    except ValueError:
        return str(resolved)


def build_declarations(
    frame: pl.DataFrame, options: ScaffoldOptions, root: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(domain.yaml content, policy content, facts for the report) from the sample frame."""
    name = options.name
    if not _NAME.match(name):
        raise ScaffoldError(f"domain name '{name}' must be lower case letters, digits and _")
    if options.label not in frame.columns:
        raise ScaffoldError(f"{options.source}: no label column '{options.label}'")
    # Compared as text, as training will read them from the outcomes CSV (`true`, `1`, `bad`).
    observed = set(frame[options.label].drop_nulls().cast(pl.String).unique().to_list())
    unseen = [v for v in options.positive if v not in observed]
    if unseen or not options.positive:
        raise ScaffoldError(
            f"{options.source}: positive values {unseen or '(none given)'} do not occur in "
            f"'{options.label}' (observed: {sorted(observed)[:20]})"
        )
    unknown = [c for c in options.outcomes if c not in frame.columns]
    if unknown:
        raise ScaffoldError(f"{options.source}: outcome columns not in the file: {unknown}")
    case_id = options.case_id or detect_case_id(frame)
    if case_id is not None and case_id not in frame.columns:
        raise ScaffoldError(f"{options.source}: no column '{case_id}' for the case id")
    try:
        ids = plan_case_ids(frame, name, case_id)
    except ValueError as exc:
        raise ScaffoldError(f"{options.source}: {exc}") from exc
    case_id = case_id or "case_id"
    event_time, time_spec, days = _event_time_plan(frame, options)
    label = frame[options.label].cast(pl.String).is_in(options.positive).cast(pl.Int8)
    candidates = [
        c for c in frame.columns if c not in (options.label, *options.outcomes, case_id, event_time)
    ]
    # Columns that know the outcome are outcomes, not inputs, whatever the flags said.
    leaks = {
        c: reason
        for c in candidates
        if (reason := leak_reason(c, frame[c], label, LeakageLimits())) is not None
    }
    outcomes = list(dict.fromkeys([options.label, *options.outcomes, *leaks]))
    inputs = [c for c in candidates if c not in leaks]
    protected = propose_protected(frame, inputs)
    kept_out = {*protected, *(p for a in protected.values() for p in a.get("proxies", []))}
    usable = [c for c in inputs if c not in kept_out]

    columns: dict[str, Any] = {
        case_id: {"type": "str", "nullable": False, "unique": True, "description": "Case id"},
        event_time: {"type": "datetime", "nullable": False, "description": "Decision time"},
    }
    columns.update({c: infer_column(frame[c]) for c in inputs})
    passthrough, derived, says = starter_features(frame, usable)
    notes = [ids.note, *(f"outcome, not input: {c} ({why})" for c, why in leaks.items())]
    for column in inputs:
        codes = sentinel_codes(frame[column]) if column in usable else []
        if codes:
            listed = ", ".join(f"{c:g}" for c in codes)
            columns[column]["description"] += f"; {listed} read as unknown (sentinel)"
            notes.append(f"sentinel codes {listed} in {column} read as missing")
    for column, entry in protected.items():
        proxies = entry.get("proxies", [])
        notes.append(
            f"protected ({entry['category']}): {column}"
            + (f", proxies {proxies}" if proxies else "")
            + " - kept for fairness monitoring only"
        )
    sorted_days = days.sort()
    validation_from = sorted_days[int(len(sorted_days) * VALIDATION_SHARE)]
    values = _feature_values(frame, passthrough, derived)
    model = model_section(values, label, options, validation_from, says)
    if options.review_share is not None:
        from hitl_gate.app.scaffold_bands import bands_for_review_share, validation_pds

        chosen = values.select(model["features"])
        try:
            pds = validation_pds(chosen, label, days >= validation_from)
            plan = bands_for_review_share(
                pds, options.review_share, list(model["bands"].values())[-2]
            )
        except ValueError as exc:
            raise ScaffoldError(f"--review-share: {exc}") from exc
        model["bands"] = plan.bands
        notes.append(plan.describe())
    notes.append(
        "reason texts are generated from column names: rewrite each as a specific reason an "
        "applicant understands (Regulation B 1002.9(b)(2))"
    )
    owner = options.owner or f"{name}-team@example.invalid"
    start = sorted_days[0]
    # Reviewers see the inputs the model uses first, then the others, up to a screenful;
    # never a protected attribute or proxy (a role may be granted them in review.yaml).
    used = [c for c in usable if any(says.get(f, ("",))[0] == c for f in model["features"])]
    context = [*used, *(c for c in usable if c not in used)][:MAX_CONTEXT_COLUMNS]
    domain = {
        "name": name,
        "description": (
            f"Scaffolded by `hitl domain init` from {options.source.name}: review every section "
            "(contract limits, features, label, bands, reason texts, review context)."
        ),
        "case_id": case_id,
        "case_id_pattern": ids.pattern,
        "event_time": event_time,
        "landing_subdir": f"{name}/cases",
        "outcomes_subdir": f"{name}/outcomes",
        # Open-ended: a scaffolded domain goes live; a historical sample adds its last day as `end`.
        "data_window": {"start": start.isoformat()},
        "contract": {"version": 1, "columns": columns},
        "features": {
            "project": "hitl_gate",
            "entity": f"{name}_case",
            "view": f"{name}_features",
            "service": f"{name}_scorecard_v1",
            "owner": owner,
            "ttl_days": 3650,
            "passthrough": passthrough,
            "derived": derived,
        },
        "model": model,
        **({"protected_attributes": protected} if protected else {}),
        "policy": f"policies/{name}/v1.yaml",
        "retention_class": "regulatory_7y",
        "review": {
            "settings": "review.yaml",
            "context_columns": [event_time, *context],
            "verdicts": ["approve", "decline"],
            "batch_size": 200,
            "sla_hours": 48,
        },
        "sample": {
            "source": _source_reference(options.source, root),
            "case_id": ids.spec,
            "event_time": time_spec,
            "outcome_columns": outcomes,
            "outcomes_file": "outcomes.csv",
        },
    }
    policy = starter_policy(name, owner, start, list(model["bands"]))
    facts = {
        "case_id": case_id,
        "event_time": event_time,
        "features": model["features"],
        "positive_rate": as_number(label.mean()) or 0.0,
        "notes": notes,
    }
    return domain, policy, facts


_HEADER = """\
# Generated by `hitl domain init {name} --from {source}`.
# A starting point inferred from {rows} historical cases: review every limit, text and choice,
# then run `hitl domain check {name}`. Reference: docs/onboarding.md.
"""


def starter_review_settings(name: str, protected: list[str] | None = None) -> dict:
    """One reviewer role working the starter policy's queue, an escalation queue; masking that
    drops the protected attributes and proxies for every role.

    Beyond those, masking is left to the domain's owner and compliance (docs/review.md): which
    columns a role may see is not something to infer from data. Granting a role a protected
    column is an explicit `show` in its masking.
    """
    hidden = {column: {"method": "drop"} for column in protected or []}
    queue = f"{name}_review"
    return {
        "roles": {"reviewer": [queue], "supervisor": [queue, "escalations"]},
        "queues": {
            queue: {
                "role": "reviewer",
                "sla_hours": 48,
                "batch_size": 200,
                "escalate_to": "escalations",
                "description": "Cases the starter policy sends to a person.",
            },
            "escalations": {
                "role": "supervisor",
                "sla_hours": 24,
                "batch_size": 50,
                "description": "SLA breaches and reviewer disagreements.",
            },
        },
        "default_role": "reviewer",
        "grace_hours": 24,
        "rationale_required_for": ["decline"],
        "masking": {"reviewer": dict(hidden), "supervisor": dict(hidden)},
    }


def scaffold_domain(options: ScaffoldOptions, root: Path = PROJECT_ROOT, force: bool = False):
    """Write `domains/<name>/domain.yaml` and `review.yaml`, and `policies/<name>/v1.yaml` with
    its test cases `v1.cases.yaml`."""
    from policies.testing import cases_path

    domain_file = root / "domains" / options.name / "domain.yaml"
    review_file = domain_file.with_name("review.yaml")
    policy_file = root / "policies" / options.name / "v1.yaml"
    cases_file = cases_path(policy_file)
    existing = [p for p in (domain_file, review_file, policy_file, cases_file) if p.exists()]
    if existing and not force:
        raise ScaffoldError(f"already exists (use --force to overwrite): {existing}")
    frame = read_source(options.source)
    if frame.height == 0:
        raise ScaffoldError(f"{options.source}: no rows")
    domain, policy, facts = build_declarations(frame, options, root)
    header = _HEADER.format(name=options.name, source=options.source.name, rows=frame.height)
    screening = "".join(f"# Screening: {note}.\n" for note in facts["notes"])
    attributes = domain.get("protected_attributes", {})
    hidden = [*attributes, *(p for a in attributes.values() for p in a.get("proxies", []))]
    review = starter_review_settings(options.name, hidden)
    cases = starter_policy_cases(policy, list(domain["model"]["bands"]))
    written = ((domain_file, domain), (review_file, review), (policy_file, policy),
               (cases_file, cases))  # fmt: skip
    for path, content in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)
        notes = screening if path == domain_file else ""
        path.write_text(header + notes + text, encoding="utf-8")
    return Scaffold(
        domain_file=domain_file,
        policy_file=policy_file,
        case_id=facts["case_id"],
        event_time=facts["event_time"],
        columns=len(domain["contract"]["columns"]),
        features=facts["features"],
        positive_rate=facts["positive_rate"],
        notes=facts["notes"],
    )

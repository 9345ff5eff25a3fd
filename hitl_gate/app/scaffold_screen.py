"""Screening a sample's columns before `hitl domain init` makes features of them.

Four questions, asked of every input column, whose answers the scaffold writes down for the
domain's owner to confirm:

- Is it a *protected attribute* (race, sex, age, ...) or a likely *proxy* (postcode, first
  name)? Proposed by name and by values, declared under `protected_attributes`, and so never a
  feature, a reason or a reviewer's context column (hitl_gate/core/lawful.py).
- Does it *leak the outcome*: a name that says decision or outcome, or values that alone
  (nearly) determine the label? Then it is written as an outcome column (known only later),
  never an input.
- Does it use *sentinel codes* (999 for "no file")? Then its feature maps them to missing.
- Is it *text with several values*? Then it is one-hot encoded instead of dropped.

Everything is a proposal by heuristics: the owner reviews it (docs/onboarding.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hitl_gate.core.lawful import LeakageLimits

# Name tokens that say what a column is. Tokens are the name split at `_`, digits and case.
_PROTECTED_NAMES: dict[str, set[str]] = {
    "race": {"race", "racial"},
    "colour": {"colour", "color", "skin"},
    "religion": {"religion", "religious", "faith"},
    "national_origin": {
        "nationality", "citizenship", "citizen", "ethnicity", "ethnic", "immigrant",
        "immigration", "foreign", "nativity",
    },
    "sex": {"sex", "gender"},
    "marital_status": {"marital", "married", "marriage"},
    "age": {"age", "dob", "birthdate", "birthday", "yob"},
    "public_assistance_income": {"welfare", "assistance"},
    "disability": {"disability", "disabled", "handicap"},
    "sexual_orientation": {"orientation"},
}  # fmt: skip
_PROTECTED_PHRASES: dict[str, list[tuple[str, ...]]] = {  # fmt: skip
    "national_origin": [
        ("national", "origin"),
        ("country", "birth"),
        ("country", "of", "birth"),
        ("birth", "country"),
        ("place", "of", "birth"),
        ("birth", "place"),
    ],
    "age": [
        ("date", "birth"),
        ("date", "of", "birth"),
        ("birth", "date"),
        ("year", "birth"),
        ("year", "of", "birth"),
        ("birth", "year"),
    ],
    "public_assistance_income": [("public", "benefits"), ("social", "benefits")],
}
# `age` of a loan, an account or a file is not the applicant's age.
_NOT_A_PERSONS_AGE = {
    "loan", "account", "accounts", "credit", "oldest", "newest", "file", "car", "vehicle",
    "property", "home", "house", "balance", "trade", "trades", "debt", "line", "lines",
    "history", "mortgage", "card", "business", "company", "product", "item", "asset",
    "equipment", "building", "device", "claim", "policy", "contract", "months", "days",
}  # fmt: skip
_VALUE_SETS: dict[str, tuple[set[str], int]] = {
    # category: (telling values, how many must occur)
    "race": (
        {"white", "black", "asian", "african american", "black or african american",
         "american indian", "alaska native", "native hawaiian", "pacific islander",
         "caucasian", "hispanic", "latino"},
        2,
    ),
    "sex": ({"male", "female", "man", "woman", "m", "f"}, 2),
    "marital_status": ({"married", "single", "divorced", "separated", "widowed", "unmarried"}, 2),
    "religion": ({"christian", "muslim", "jewish", "hindu", "buddhist", "catholic"}, 2),
}  # fmt: skip
_REFERENCES = {"race": ("white", "caucasian"), "sex": ("male", "m"), "marital_status": ("married",)}
_PROXY_NAMES = {
    "zip", "zipcode", "postcode", "postal", "tract", "census", "firstname", "surname",
    "lastname", "language",
}  # fmt: skip
_PROXY_PHRASES = [("first", "name"), ("last", "name"), ("given", "name"), ("zip", "code")]
AGE_BINS = [25.0, 62.0]  # Regulation B 1002.6(b)(2): 62 and older is the "elderly" age

# Names that say the column records the decision or what happened after it.
_LEAK_NAMES = {
    "outcome", "outcomes", "decision", "decisions", "decided", "approve", "approved",
    "approval", "deny", "denied", "denial", "decline", "declined", "reject", "rejected",
    "rejection", "accept", "accepted", "action", "funded", "disbursed", "chargeoff",
    "charged", "writeoff", "recoveries", "recovery", "settlement", "repaid", "defaulted",
}  # fmt: skip

SENTINEL_CANDIDATES = (-9999.0, -999.0, -99.0, -9.0, -1.0, 99.0, 98.0, 666.0, 777.0, 888.0,
                       998.0, 999.0, 9998.0, 9999.0, 99999.0, 999999.0)  # fmt: skip
SENTINEL_MIN_SHARE = 0.005  # a code used for at least 0.5% of rows...
SENTINEL_MIN_GAP = 0.1  # ...standing apart from the other values by 10% of their range
MAX_ONE_HOT_LEVELS = 12
MIN_LEVEL_ROWS = 5


def name_tokens(name: str) -> list[str]:
    """`applicantRace_1` -> ['applicant', 'race']: lower-case words of a column name."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-zA-Z]+", spaced.lower()) if t]


def _has_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def _text_values(values: pl.Series) -> set[str]:
    if values.dtype != pl.String or values.n_unique() > 50:
        return set()
    return {str(v).strip().lower() for v in values.drop_nulls().unique().to_list()}


@dataclass(frozen=True)
class ProtectedProposal:
    """A column proposed as protected: its category and why."""

    column: str
    category: str
    why: str
    reference: str | None = None
    bins: list[float] = field(default_factory=list)


def protected_category(name: str, values: pl.Series) -> tuple[str, str] | None:
    """(category, why) when the column's name or values say it is a protected attribute."""
    tokens = name_tokens(name)
    for category, words in _PROTECTED_NAMES.items():
        hit = set(tokens) & words
        if category == "age" and set(tokens) & _NOT_A_PERSONS_AGE:
            hit = set()
        if hit:
            return category, f"its name says {category} ({sorted(hit)[0]!r})"
    for category, phrases in _PROTECTED_PHRASES.items():
        for phrase in phrases:
            if _has_phrase(tokens, phrase):
                return category, f"its name says {category} ({' '.join(phrase)!r})"
    observed = _text_values(values)
    for category, (telling, needed) in _VALUE_SETS.items():
        matched = sorted(t for t in telling if any(_says(v, t) for v in observed))
        if len(matched) >= needed:
            return category, f"its values look like {category}: {matched[:4]}"
    return None


def _says(value: str, word: str) -> bool:
    """`value` is `word`, or contains it as a word ("male : single" says male and single).

    Single letters (M, F) count only as the whole value.
    """
    if len(word) == 1:
        return value == word
    return re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", value) is not None


def _reference(category: str, values: pl.Series) -> str | None:
    wanted = _REFERENCES.get(category, ())
    for value in sorted(values.drop_nulls().cast(pl.String).unique().to_list()):
        if value.strip().lower() in wanted:
            return str(value)
    return None


def propose_protected(frame: pl.DataFrame, columns: list[str]) -> dict[str, dict[str, Any]]:
    """The `protected_attributes` section proposed for `columns`, proxies attached.

    Proxies (postcode, names, language) are attached to the first proposed attribute of race,
    national origin or colour, else to the first proposed one; without any attribute they
    cannot be declared, and are left to the owner.
    """
    proposed: dict[str, dict[str, Any]] = {}
    for name in columns:
        found = protected_category(name, frame[name])
        if found is None:
            continue
        category, why = found
        entry: dict[str, Any] = {"category": category}
        reference = _reference(category, frame[name])
        if reference is not None:
            entry["reference"] = reference
        if category == "age" and frame[name].dtype.is_numeric():
            entry["bins"] = AGE_BINS
        entry["description"] = f"Proposed by `hitl domain init`: {why}. Confirm or remove."
        proposed[name] = entry
    proxies = [
        c
        for c in columns
        if c not in proposed
        and (
            set(name_tokens(c)) & _PROXY_NAMES
            or any(_has_phrase(name_tokens(c), p) for p in _PROXY_PHRASES)
        )
    ]
    if proposed and proxies:
        preferred = [
            n for n, e in proposed.items() if e["category"] in ("race", "national_origin", "colour")
        ]
        owner = (preferred or list(proposed))[0]
        proposed[owner]["proxies"] = proxies
    return proposed


def leak_reason(
    name: str, values: pl.Series, label: pl.Series, limits: LeakageLimits
) -> str | None:
    """Why the column looks like the outcome or the decision itself, or None.

    Numbers are measured alone against the label (either direction, and their missingness);
    text of few values by the bad rate of each value. At `limits.max_feature_auc` or above the
    column nearly determines the label, which no honest input of a credit decision does.
    """
    from models.leakage import single_feature_auc

    hit = set(name_tokens(name)) & _LEAK_NAMES
    if hit:
        return f"its name says decision or outcome ({sorted(hit)[0]!r})"
    y = label.cast(pl.Int8).to_numpy()
    if values.dtype.is_numeric() or values.dtype == pl.Boolean:
        scores = values.cast(pl.Float64).to_numpy()
    elif values.dtype == pl.String and 1 < values.n_unique() <= 20:
        rates = pl.DataFrame({"v": values, "y": label.cast(pl.Float64)}).with_columns(
            pl.col("y").mean().over("v").alias("rate")
        )
        scores = rates["rate"].to_numpy()
    else:
        return None
    auc = single_feature_auc(np.asarray(scores, dtype=np.float64), y, limits.min_class_rows)
    if auc is not None and auc >= limits.max_feature_auc:
        return f"alone it predicts the label with AUC {auc:.3f}"
    return None


def sentinel_codes(values: pl.Series) -> list[float]:
    """Codes like 999 or -1 standing for "unknown" in a numeric column, ascending.

    A candidate code counts when at least `SENTINEL_MIN_SHARE` of rows carry it and it lies
    beyond the other values by at least `SENTINEL_MIN_GAP` of their range (999 above scores of
    300-850; not 99 inside a 0-100 percentage).
    """
    if not values.dtype.is_numeric():
        return []
    x = values.drop_nulls().cast(pl.Float64)
    if x.len() == 0:
        return []
    codes = []
    for code in SENTINEL_CANDIDATES:
        share = int((x == code).sum()) / x.len()
        if share < SENTINEL_MIN_SHARE:
            continue
        rest = x.filter(x != code)
        if rest.len() == 0:
            continue
        lo, hi = float(rest.to_numpy().min()), float(rest.to_numpy().max())
        gap = SENTINEL_MIN_GAP * max(hi - lo, 1.0)
        if code > hi + gap or code < lo - gap:
            codes.append(code)
    return sorted(codes)


def _slug(text: str) -> str:
    spelled = text.lower().replace("<=", " le ").replace(">=", " ge ")
    spelled = spelled.replace("<", " lt ").replace(">", " gt ")
    slug = re.sub(r"[^a-z0-9]+", "_", spelled).strip("_")
    return slug or "blank"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def one_hot(name: str, values: pl.Series) -> dict[str, tuple[str, str]]:
    """Indicators of a text column's levels: {feature: (SQL, level)}; {} when unsuited.

    The most frequent level is the reference (no indicator); levels seen fewer than
    `MIN_LEVEL_ROWS` times join it. Free text (more than `MAX_ONE_HOT_LEVELS` usable levels)
    is left out: it needs a declared grouping, not one feature per spelling.
    """
    counts = values.drop_nulls().value_counts(sort=True)
    levels = [str(v) for v, n in counts.iter_rows() if n >= MIN_LEVEL_ROWS]
    if len(levels) < 2 or len(levels) > MAX_ONE_HOT_LEVELS:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for level in levels[1:]:
        feature = f"{name}_is_{_slug(level)}"
        while feature in out:
            feature += "_"
        out[feature] = (f"CASE WHEN {name} = {_sql_text(level)} THEN 1 ELSE 0 END", level)
    return out


def without_sentinels(name: str, codes: list[float]) -> str:
    """The SQL of a numeric column with its sentinel codes read as missing."""
    listed = ", ".join(f"{c:g}" for c in codes)
    return f"CASE WHEN {name} IN ({listed}) THEN NULL ELSE {name} END"

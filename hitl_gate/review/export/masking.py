"""Data minimisation: each role's view of the case columns, applied before anything is written.

Masking runs on the cases frame before the workbook, the CSV and the manifest digests are built,
so a restricted value never reaches a reviewer's file in any form. The manifest digests the
masked values: it describes exactly what the reviewer received.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:  # the when/then builder types Polars does not export at the top level
    from polars.expr.whenthen import ChainedThen, Then

from hitl_gate.core.protected import expression_columns
from hitl_gate.review.settings import MaskRule

PSEUDONYM_PREFIX = "P-"
OTHER_GROUP = "other"
_PSEUDONYM_CONTEXT = b"hitl-gate/review/pseudonymise/v2"


def pseudonym_key(system_key: bytes, domain: str, column: str) -> bytes:
    """The pseudonym key of one domain's column, derived from the system key.

    One key per (domain, column): the same value gets unrelated pseudonyms in two columns or
    two domains, so pseudonyms cannot be joined across them, and none is the signing key.
    """
    label = _PSEUDONYM_CONTEXT + b"\0" + domain.encode("utf-8") + b"\0" + column.encode("utf-8")
    return hmac.new(system_key, label, hashlib.sha256).digest()


def pseudonymise(value: object, key: bytes) -> str | None:
    """`P-` and 16 hex digits of HMAC-SHA256(key, value); None stays None."""
    if value is None:
        return None
    digest = hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{PSEUDONYM_PREFIX}{digest[:16]}"


def _band_label(low: float | None, high: float | None) -> str:
    def fmt(number: float) -> str:
        return f"{number:,.0f}" if number >= 1000 else f"{number:g}"

    if low is None:
        return f"< {fmt(high)}" if high is not None else "all"
    if high is None:
        return f">= {fmt(low)}"
    return f"{fmt(low)} - < {fmt(high)}"


def generalise(column: pl.Expr, bands: Sequence[float]) -> pl.Expr:
    """The band (as text) a numeric value falls in; bands are ascending upper bounds."""
    bounds: list[float | None] = [None, *bands, None]
    expr: Then | ChainedThen = pl.when(column.is_null()).then(pl.lit(None, dtype=pl.String))
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        test = pl.lit(True)
        if low is not None:
            test = test & (column >= low)
        if high is not None:
            test = test & (column < high)
        expr = expr.when(test).then(pl.lit(_band_label(low, high)))
    return expr.otherwise(pl.lit(None, dtype=pl.String))


def group(column: pl.Expr, groups: Mapping[str, Sequence[str]]) -> pl.Expr:
    """The name of the group listing the value (e.g. a state's region); unlisted: "other"."""
    mapping = {str(value): name for name, values in groups.items() for value in values}
    text = column.cast(pl.String)
    named = text.replace_strict(mapping, default=OTHER_GROUP, return_dtype=pl.String)
    return pl.when(text.is_null()).then(pl.lit(None, dtype=pl.String)).otherwise(named)


def partial(column: pl.Expr, keep_start: int, keep_end: int) -> pl.Expr:
    """Text with all but the first `keep_start` and last `keep_end` characters as '*'.

    Values too short to hide anything are masked entirely.
    """
    text = column.cast(pl.String)
    length = text.str.len_chars()
    hidden = (length - keep_start - keep_end).clip(lower_bound=0)
    masked = pl.concat_str(
        text.str.slice(0, keep_start),
        pl.lit("*").repeat_by(hidden).list.join(""),
        text.str.slice(length - keep_end, keep_end) if keep_end else pl.lit(""),
    )
    return (
        pl.when(length > keep_start + keep_end)
        .then(masked)
        .otherwise(pl.lit("*").repeat_by(length).list.join(""))
    )


def hide_protected(
    rules: Mapping[str, MaskRule], protected_attributes: Sequence[str]
) -> dict[str, MaskRule]:
    """`rules` with every protected attribute (and declared proxy) dropped unless the role is
    explicitly granted it (`{method: show}`): a declaration a masking file forgot still hides it.
    """
    hidden = {name: MaskRule(method="drop") for name in protected_attributes if name not in rules}
    return {**rules, **hidden}


def apply_masking(
    cases: pl.DataFrame,
    rules: Mapping[str, MaskRule],
    key: bytes,
    protected: Sequence[str] = (),
    *,
    domain: str,
) -> tuple[pl.DataFrame, list[str]]:
    """The cases as `rules` allow them to be seen, and the names of the dropped columns.

    `protected` columns (the case id) are needed to match verdicts and are never masked.
    """
    refused = [
        name for name in protected if rules.get(name, MaskRule(method="show")).method != "show"
    ]
    if refused:
        raise ValueError(f"columns {refused} identify the case and cannot be masked")
    dropped: list[str] = []
    exprs: list[pl.Expr] = []
    for name, rule in rules.items():
        if name not in cases.columns or rule.method == "show":
            continue
        column = pl.col(name)
        if rule.method == "drop":
            dropped.append(name)
        elif rule.method == "generalise":
            exprs.append(generalise(column.cast(pl.Float64, strict=False), rule.bands).alias(name))
        elif rule.method == "group":
            exprs.append(group(column, rule.groups).alias(name))
        elif rule.method == "suppress":
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
        elif rule.method == "partial":
            exprs.append(partial(column, rule.keep_start, rule.keep_end).alias(name))
        else:
            exprs.append(
                column.map_elements(
                    functools.partial(pseudonymise, key=pseudonym_key(key, domain, name)),
                    return_dtype=pl.String,
                ).alias(name)
            )
    return cases.with_columns(exprs).drop(dropped), dropped


def mask_derived(rules: Mapping[str, MaskRule], derived: Mapping[str, str]) -> dict[str, MaskRule]:
    """`rules` plus a drop for every derived column computed from a masked column.

    A ratio such as loan / income shown beside the loan gives the income back exactly, so a
    derived column is hidden whenever a column it reads is masked, unless the masking file
    gives it a rule of its own (a band, say, cut at the policy's thresholds).
    """
    masked = {name for name, rule in rules.items() if rule.method != "show"}
    leaks = {
        name: MaskRule(method="drop")
        for name, sql in derived.items()
        if name not in rules and _reads(sql) & masked
    }
    return {**rules, **leaks}


def _reads(sql: str) -> set[str]:
    """Names `sql` reads; fails closed: the feature SQL is DuckDB's, which Polars may not parse,
    so every identifier-like word counts too (a string literal naming a column is hidden)."""
    return expression_columns(sql) | set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql))

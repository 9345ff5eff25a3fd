"""The columns a domain's protected-attribute declaration rules out, derived once for every stage.

`protected_columns` is what review masking hides, `tainted_features` what `hitl domain check`
refuses as model features, `protected_reason_codes` what an adverse-action notice never states
(hitl_gate/core/lawful.py declares the attributes; docs/compliance.md says why).
"""

from __future__ import annotations

import polars as pl

from hitl_gate.core.domain import DomainConfig


def protected_columns(domain: DomainConfig) -> list[str]:
    """Every protected attribute and declared proxy of the domain, in declaration order.

    The review export's masking must hide these from every role not explicitly granted them.
    """
    attributes = domain.protected_attributes
    return list(dict.fromkeys([*attributes, *(p for a in attributes.values() for p in a.proxies)]))


def expression_columns(sql: str) -> set[str]:
    """The column names a SQL expression refers to (empty when it does not parse)."""
    try:
        return set(pl.sql_expr(sql).meta.root_names())
    except Exception:  # Polars raises several types for bad SQL; the parse check reports it
        return set()


def tainted_features(domain: DomainConfig) -> dict[str, list[str]]:
    """Served features computed from a protected column, with the protected columns they use.

    A passthrough of a protected column, a derived expression mentioning one, and the
    applicant-history features when their key or amount is one, all count.
    """
    protected = set(protected_columns(domain))
    features = domain.features
    found: dict[str, list[str]] = {}
    for name in features.passthrough:
        if name in protected:
            found[name] = [name]
    for name, sql in features.derived.items():
        used = sorted(expression_columns(sql) & protected)
        if used:
            found[name] = used
    history = features.applicant_history
    if history is not None:
        used = sorted({history.key, history.amount} & protected)
        for name in history.names if used else []:
            found[name] = used
    return found


def tainted_columns(domain: DomainConfig) -> set[str]:
    """Protected columns, proxies and every feature computed from them."""
    return set(protected_columns(domain)) | set(tainted_features(domain))


def protected_reason_codes(domain: DomainConfig) -> set[str]:
    """Reason codes that would cite a protected attribute or proxy (directly or via a feature)."""
    tainted = tainted_columns(domain)
    return {rc.code for name, rc in domain.model.reason_codes.items() if name in tainted}

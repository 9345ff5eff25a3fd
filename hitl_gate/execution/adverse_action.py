"""Adverse-action records: why a declined applicant was declined, in plain language.

Up to four specific reasons per decline, most important first: the reviewer's reason code (when
a person declined) or the policy rule that declined automatically (its rule text), then the
model's reason codes in the order the scorecard ranked them, each turned into the domain's
controlled text. A code without declared text keeps its code visible
rather than disappearing, so a notice never shows fewer reasons than were recorded.

A code that would cite a protected attribute or a declared proxy (Regulation B 1002.6(b):
a basis that may not be used, so it cannot be a reason) is never stated, whoever recorded it;
`hitl domain check` refuses such declarations, and this is the last line behind it.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.protected import protected_reason_codes

MAX_REASONS = 4


def reason_texts(domain: DomainConfig) -> dict[str, str]:
    """Reason code -> plain-language text, from the domain declaration."""
    return {rc.code: rc.text for rc in domain.model.reason_codes.values()}


def adverse_actions(
    executed: pl.DataFrame, domain: DomainConfig, policy_texts: Mapping[str, str]
) -> pl.DataFrame:
    """One row per executed decline: up to four reason codes and their texts.

    `executed` needs case_id, partition_date, action, decided_by, reason_codes and, optionally,
    verdict_reason_code and route_reason_code; `policy_texts` maps policy reason codes to the
    text of their rule.
    """
    forbidden = sorted(protected_reason_codes(domain))
    texts = {
        code: text
        for code, text in {**policy_texts, **reason_texts(domain)}.items()
        if code not in forbidden
    }
    declines = executed.filter(pl.col("action") == "decline")
    for optional in ("verdict_reason_code", "route_reason_code"):
        if optional not in declines.columns:
            declines = declines.with_columns(pl.lit(None, pl.String).alias(optional))
    empty = pl.lit([], pl.List(pl.String))
    codes = (
        pl.concat_list(
            pl.when(pl.col("verdict_reason_code").is_in(list(texts)))
            .then(pl.concat_list(pl.col("verdict_reason_code")))
            .otherwise(empty),
            pl.when(
                (pl.col("decided_by") == "policy") & pl.col("route_reason_code").is_in(list(texts))
            )
            .then(pl.concat_list(pl.col("route_reason_code")))
            .otherwise(empty),
            pl.col("reason_codes")
            .fill_null(empty)
            .list.eval(pl.element().filter(~pl.element().is_in(forbidden))),
        )
        .list.unique(maintain_order=True)
        .list.head(MAX_REASONS)
    )
    # A notice always states a reason: failing all of the above, the policy rule that routed it.
    fallback = (
        pl.when(
            pl.col("route_reason_code").is_not_null()
            & ~pl.col("route_reason_code").is_in(forbidden)
        )
        .then(pl.concat_list(pl.col("route_reason_code")))
        .otherwise(pl.lit(["UNSPECIFIED"], pl.List(pl.String)))
    )
    codes = pl.when(codes.list.len() > 0).then(codes).otherwise(fallback)
    return declines.select(
        "domain",
        "case_id",
        "partition_date",
        "decided_by",
        codes.alias("reason_codes"),
    ).with_columns(
        pl.col("reason_codes")
        .list.eval(pl.element().replace_strict(texts, default="Reason code " + pl.element()))
        .alias("reasons")
    )

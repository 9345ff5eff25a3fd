"""Case assembly: one row per case with what policy conditions can refer to."""

from __future__ import annotations

import polars as pl

from hitl_gate.core.domain import DomainConfig

Scans = tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]
"""The day's stored `validated_cases`, `case_features` and `risk_scores`, in that order."""


def assemble_cases(
    domain: DomainConfig,
    validated_cases: pl.DataFrame | pl.LazyFrame,
    case_features: pl.DataFrame | pl.LazyFrame,
    risk_scores: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """One row per case with inputs, features and scores: what policy conditions can refer to.

    Feature values come from Feast (what the model saw); contract columns that are not
    features come from the validated input. The inputs may be scans of the stored stages:
    then only the joined frame is ever held, not the three inputs beside it.
    """
    validated, features, scores = (f.lazy() for f in (validated_cases, case_features, risk_scores))
    feature_cols = [c for c in features.collect_schema().names() if c != "partition_date"]
    input_cols = [
        c
        for c in validated.collect_schema().names()
        if c not in feature_cols or c == domain.case_id
    ]
    score_cols = [c for c in scores.collect_schema().names() if c != "partition_date"]
    return (
        validated.select(input_cols)
        .join(features.select(feature_cols), on=domain.case_id, how="inner", maintain_order="left")
        .join(scores.select(score_cols), on=domain.case_id, how="inner", maintain_order="left")
        .collect()
    )


def assemble_slice(domain: DomainConfig, scans: Scans, offset: int, length: int) -> pl.DataFrame:
    """`assemble_cases` for validated rows `offset..offset+length` of the day.

    Features and scores are stored in the validated order, so the same row range holds the
    same cases and is read as such; if a stage's range does not (a partition re-run on its
    own), its rows are found by case id instead. Same rows and order as the whole-day join.
    """
    validated, features, scores = scans
    cases = validated.slice(offset, length).collect()
    ids = cases.get_column(domain.case_id)
    aligned = []
    for stage in (features, scores):
        part = stage.slice(offset, length).collect()
        if not part.get_column(domain.case_id).equals(ids):
            part = stage.filter(pl.col(domain.case_id).is_in(ids.implode())).collect()
        aligned.append(part)
    return assemble_cases(domain, cases, aligned[0], aligned[1])

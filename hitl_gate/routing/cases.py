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
    features come from the validated input. The result is the inner join of the three on the
    case id, in the validated order. Features and scores are stored in the validated order,
    so when their case ids are the validated ones, row for row (unique, none missing), the
    columns are put side by side instead: the same frame without two joins on a text key
    (3 of 3.7 CPU s at a million cases). Otherwise (a stage re-run on its own, a case
    missing from a stage) they are joined.
    """
    validated, features, scores = (f.lazy() for f in (validated_cases, case_features, risk_scores))
    feature_cols = [c for c in features.collect_schema().names() if c != "partition_date"]
    input_cols = [
        c
        for c in validated.collect_schema().names()
        if c not in feature_cols or c == domain.case_id
    ]
    score_cols = [c for c in scores.collect_schema().names() if c != "partition_date"]
    inputs = validated.select(input_cols).collect()
    stages = [features.select(feature_cols).collect(), scores.select(score_cols).collect()]
    if _aligned(inputs, stages, domain.case_id):
        return inputs.hstack(
            [column for stage in stages for column in stage.drop(domain.case_id).get_columns()]
        )
    joined = inputs.lazy()
    for stage in stages:
        joined = joined.join(stage.lazy(), on=domain.case_id, how="inner", maintain_order="left")
    return joined.collect()


def _aligned(inputs: pl.DataFrame, stages: list[pl.DataFrame], case_id: str) -> bool:
    """True when every stage holds the inputs' case ids in the same rows, and those are
    unique and never null: then the inner join pairs row i with row i, nothing else."""
    ids = inputs.get_column(case_id)
    if not all(stage.get_column(case_id).equals(ids) for stage in stages):
        return False
    return ids.null_count() == 0 and unique_ids(ids)


def unique_ids(ids: pl.Series) -> bool:
    """Whether no id repeats: first among the ids' 64-bit hashes (`_id_hashes`), exact on the
    texts only when a hash repeats.

    Distinct hashes prove distinct ids, so the fast path never accepts a repeated id; a
    repeated hash is a repeated id or a collision, which only the texts tell apart. Counting
    the distinct texts of a million ids cost 0.37 CPU s, their hashes a fraction of it.
    """
    if _id_hashes(ids).n_unique() == ids.len():
        return True
    return ids.n_unique() == ids.len()


def _id_hashes(ids: pl.Series) -> pl.Series:
    """The ids' 64-bit hashes, one per id: a function of its own so that a test can force
    the collisions a real day almost never has and check that the texts then decide."""
    return ids.hash()


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

"""The `case_features` stage's rules: write the days' Feast sources, then serve them back.

Pass 1 computes the application features of each slice of validated cases into the day's
Feast file (`write_feature_sources`); pass 2 retrieves them point in time through the serving
feature service, exactly as training reads them, and digests each row (`served_features`).
The asset only slices its input and writes the output; slices arrive here as frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from hitl_gate.core.digests import row_digests
from hitl_gate.core.domain import DomainConfig

if TYPE_CHECKING:
    from feast import FeatureStore

    from features.services import ModelVersionRef


def feature_inputs(domain: DomainConfig) -> list[str]:
    """The validated columns this stage reads, once each: ids, times, passthrough, the columns
    derived features are computed from, and the applicant history's key and amount."""
    names = [domain.case_id, "partition_date", domain.event_time, *domain.features.passthrough]
    for sql in domain.features.derived.values():
        names += pl.sql_expr(sql).meta.root_names()
    history = domain.features.applicant_history
    if history is not None:
        names += [history.key, history.amount]
    return list(dict.fromkeys(names))


def write_feature_sources(
    domain: DomainConfig,
    feast_dir: Path,
    days: list[date],
    slices: Iterable[pl.DataFrame],
    *,
    sliced: bool,
    created: datetime,
) -> pl.DataFrame | None:
    """Compute the days' application features slice by slice into their Feast files.

    `slices` hold the `feature_inputs` columns. A day read in slices is staged and renamed
    whole at the end (or removed on an error). Returns the validated columns of a one-slice
    day (retrieval reuses them), else None.
    """
    from features.engineering import compute_features
    from features.store import FeaturePartitionWriter

    writer = FeaturePartitionWriter(domain, feast_dir, days, staged=sliced)
    whole = None
    try:
        for cases in slices:
            computed = compute_features(cases, domain, created_at=created)
            writer.write(computed, cases["partition_date"])
            whole = None if sliced else cases
            del cases, computed  # else held while the next slice is read
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return whole


def serving_service(
    store: FeatureStore, domain: DomainConfig, champion: ModelVersionRef | None
) -> str:
    """The service that serves the day: the champion version's own, else the declared one.

    The champion decides these cases, so its version's service serves their features; before
    any model exists the declared service does.
    """
    from features.services import ensure_model_service

    if champion is None:
        return domain.features.service
    return ensure_model_service(store, domain, champion)


def entity_columns(domain: DomainConfig) -> list[str]:
    """The validated columns retrieval needs: case id, day, event time, history join key."""
    history = domain.features.applicant_history
    return [
        domain.case_id,
        "partition_date",
        domain.event_time,
        *([history.key] if history is not None else []),
    ]


def retrieval_entities(cases: pl.DataFrame, domain: DomainConfig) -> pl.DataFrame:
    """The Feast entity rows of `cases`: the decision instant as `event_timestamp` in UTC."""
    history = domain.features.applicant_history
    return cases.select(
        domain.case_id,
        "partition_date",
        pl.col(domain.event_time).dt.replace_time_zone("UTC").alias("event_timestamp"),
        *([history.key] if history is not None else []),
    )


def served_features(
    store: FeatureStore, domain: DomainConfig, cases: pl.DataFrame, service: str
) -> pl.DataFrame:
    """The features of `cases` as of their decision time, with the service and a row digest."""
    from features.store import historical_features

    features = historical_features(store, domain, retrieval_entities(cases, domain), service)
    history = domain.features.applicant_history
    if history is not None:  # a join key, not a feature: out of the digest and file
        features = features.drop(history.key)
    return features.with_columns(
        pl.lit(service).alias("feature_service"),
        row_digests(features, domain.features.names).alias("feature_digest"),
    )


@dataclass
class NullCounts:
    """Missing values per feature, added up over the slices of a run."""

    names: Sequence[str]
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = dict.fromkeys(self.names, 0)

    def add(self, features: pl.DataFrame) -> None:
        for name, nulls in (
            features.select(pl.col(self.names).null_count()).row(0, named=True).items()
        ):
            self.counts[name] += nulls

    def frame(self) -> pl.DataFrame:
        """One row per feature: feature, nulls."""
        return pl.DataFrame({"feature": list(self.counts), "nulls": list(self.counts.values())})

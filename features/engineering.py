"""Turn validated case rows into the rows of the domain's Feast feature view.

Everything comes from the domain declaration: passthrough columns are copied, derived features
are SQL expressions that Polars parses into vectorised expressions (never `eval`). Every
feature is served as Float64 so the model sees one numeric type whatever the contract says.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from hitl_gate.core.domain import DomainConfig

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
FEATURE_DTYPE = pl.Float64
TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")


def utc_timestamps(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Normalise a datetime column to microsecond UTC, the one timestamp type Feast joins on.

    Naive datetimes are taken as UTC: the contract declares the event time in UTC, and a
    silent local-time interpretation would shift every point-in-time join.
    """
    if not isinstance(dtype, pl.Datetime):
        raise TypeError(f"expected a Datetime column, got {dtype}")
    if dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    else:
        column = column.dt.convert_time_zone("UTC")
    return column.dt.cast_time_unit("us")


def derived_expressions(domain: DomainConfig, columns: list[str]) -> list[pl.Expr]:
    """Parse the declared derived features, failing with the feature named if a column is unknown.

    Each expression sees only the validated columns, not other derived features, so the result
    does not depend on declaration order.
    """
    exprs = []
    for name, sql in domain.features.derived.items():
        expr = pl.sql_expr(sql)
        missing = sorted(set(expr.meta.root_names()) - set(columns))
        if missing:
            raise ValueError(f"derived feature '{name}' ({sql}) uses unknown columns {missing}")
        exprs.append(expr.cast(FEATURE_DTYPE).alias(name))
    return exprs


def compute_features(
    validated: pl.DataFrame, domain: DomainConfig, *, created_at: datetime | None = None
) -> pl.DataFrame:
    """Columns: <case_id>, event_timestamp, created_timestamp, then the application features.

    `event_timestamp` is the declared event time (the decision instant), so retrieval as of a
    decision can never see features computed from later data. `created_timestamp` records when
    the row was computed (now, unless `created_at` pins it for reproducible reruns); Feast uses
    it to pick the newest row when two share an event time.
    """
    features = domain.features
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    event_dtype = validated.schema[domain.event_time]
    return validated.select(
        pl.col(domain.case_id).cast(pl.String),
        utc_timestamps(pl.col(domain.event_time), event_dtype).alias(EVENT_TIMESTAMP),
        pl.lit(created).cast(TIMESTAMP_DTYPE).alias(CREATED_TIMESTAMP),
        *[pl.col(name).cast(FEATURE_DTYPE) for name in features.passthrough],
        *derived_expressions(domain, validated.columns),
    )


def feature_frame_schema(domain: DomainConfig) -> dict[str, pl.DataType]:
    """The exact schema of a feature partition file, shared by the writer and the tests."""
    return {
        domain.case_id: pl.String(),
        EVENT_TIMESTAMP: TIMESTAMP_DTYPE,
        CREATED_TIMESTAMP: TIMESTAMP_DTYPE,
        **{name: FEATURE_DTYPE() for name in domain.features.application_names},
    }

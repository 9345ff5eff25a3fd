"""The Feast objects of a domain, built from its declaration: entity, source, view, service.

The repository reads like a schema (one object per concept, each with a description, an owner
and tags) but is generated, so adding a domain never means writing Feast code. Importing this
module imports Feast (about 13 s): import it only where Feast is really used.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, String

from features.engineering import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from features.history import SOURCE_AMOUNT, SOURCE_CASE
from hitl_gate.core.domain import DomainConfig

# Partition files are `<YYYY-MM-DD>.parquet`; in-flight writes end in `.tmp`, so never match.
PARTITION_GLOB = "*.parquet"


def source_uri(source_path: Path) -> str:
    """The absolute glob the offline store reads: every partition file of the directory.

    A glob (not one file) lets a new day appear without touching the registry; DuckDB's
    `read_parquet` expands it at query time. A path already ending in `.parquet` is kept.
    """
    path = source_path.resolve()
    return str(path if path.suffix == ".parquet" else path / PARTITION_GLOB)


def common_tags(domain: DomainConfig) -> dict[str, str]:
    """Tags every object carries, so the registry can be filtered by domain and contract."""
    return {
        "domain": domain.name,
        "contract_version": str(domain.contract.version),
        "managed_by": "hitl-gate",
    }


def build_entity(domain: DomainConfig) -> Entity:
    """The case being decided; STRING declared because Parquet `large_string` infers as JSON."""
    return Entity(
        name=domain.features.entity,
        join_keys=[domain.case_id],
        value_type=ValueType.STRING,
        description=f"One {domain.name} case, keyed by {domain.case_id}.",
        owner=domain.features.owner,
        tags=common_tags(domain),
    )


def build_source(domain: DomainConfig, source_path: Path) -> FileSource:
    """Daily Parquet partitions of computed features, timestamped at the decision time."""
    return FileSource(
        name=f"{domain.features.view}_source",
        path=source_uri(source_path),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
        description=f"Computed {domain.name} features, one Parquet file per partition day.",
        owner=domain.features.owner,
        tags=common_tags(domain),
    )


def feature_fields(domain: DomainConfig) -> list[Field]:
    """Float64 fields with their provenance: the contract column or the SQL expression."""
    columns = domain.contract.columns
    fields = [
        Field(
            name=name,
            dtype=Float64,
            description=columns[name].description or f"Input column {name}, as declared.",
            tags={"kind": "passthrough"},
        )
        for name in domain.features.passthrough
    ]
    fields += [
        Field(name=name, dtype=Float64, description=sql, tags={"kind": "derived"})
        for name, sql in domain.features.derived.items()
    ]
    return fields


def build_view(domain: DomainConfig, entity: Entity, source: FileSource) -> FeatureView:
    """The feature view; its TTL bounds how stale a feature may be at decision time."""
    return FeatureView(
        name=domain.features.view,
        entities=[entity],
        ttl=timedelta(days=domain.features.ttl_days),
        schema=[Field(name=domain.case_id, dtype=String), *feature_fields(domain)],
        source=source,
        online=True,
        description=f"Features of each {domain.name} case as of its decision time.",
        owner=domain.features.owner,
        tags=common_tags(domain),
    )


def build_history_objects(domain: DomainConfig, source_path: Path) -> list:
    """Applicant entity, history source and history view (`features.history`), in apply order.

    The view's TTL is the history window: a row older than the window says nothing about the
    applicant's recent history. Every case has its own row at its decision time, so retrieval
    at that time always finds it; the TTL matters only for requests at other times.
    """
    history = domain.features.applicant_history
    if history is None:
        return []
    tags = {**common_tags(domain), "kind": "applicant_history"}
    entity = Entity(
        name=history.entity,
        join_keys=[history.key],
        value_type=ValueType.STRING,
        description=f"The applicant of a {domain.name} case, keyed by {history.key}.",
        owner=domain.features.owner,
        tags=tags,
    )
    source = FileSource(
        name=f"{history.view}_source",
        path=source_uri(source_path),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
        description=(
            f"One row per {domain.name} case: its applicant's earlier cases within "
            f"{history.window_days} days, plus the case's own {SOURCE_CASE} and "
            f"{SOURCE_AMOUNT} (the ledger later days read)."
        ),
        owner=domain.features.owner,
        tags=tags,
    )
    w = history.window_days
    texts = [
        f"Applications by the same applicant in the {w} days before this decision.",
        f"Sum of {history.amount} over those applications.",
        f"Days since the applicant's latest earlier application within {w} days; null if none.",
    ]
    view = FeatureView(
        name=history.view,
        entities=[entity],
        ttl=timedelta(days=w),
        schema=[
            Field(name=history.key, dtype=String),
            *[
                Field(name=n, dtype=Float64, description=t, tags={"kind": "history"})
                for n, t in zip(history.names, texts, strict=True)
            ],
        ],
        source=source,
        online=True,
        description=f"Applicant history of each {domain.name} case as of its decision time.",
        owner=domain.features.owner,
        tags=tags,
    )
    return [entity, source, view]


def build_service(domain: DomainConfig, views: list[FeatureView]) -> FeatureService:
    """The declared feature service: every view, as training (and a model-less run) reads it."""
    return FeatureService(
        name=domain.features.service,
        features=list(views),
        description=f"Features served to model {domain.model.name} ({domain.features.service}).",
        owner=domain.features.owner,
        tags={**common_tags(domain), "model": domain.model.name},
    )


def feature_objects(domain: DomainConfig, source_path: Path) -> list:
    """Entity, FileSource, FeatureView (plus the applicant-history trio when declared) and
    the declared FeatureService of the domain, in apply order.

    `source_path` is the application partition directory (or one Parquet file); it is made
    absolute so the registry stays valid from any working directory and any process. The
    history source sits next to it, in the folder named after the history view.
    """
    entity = build_entity(domain)
    source = build_source(domain, source_path)
    view = build_view(domain, entity, source)
    history = domain.features.applicant_history
    extra = (
        build_history_objects(domain, Path(source_path).resolve().parent / history.view)
        if history is not None and Path(source_path).suffix != ".parquet"
        else []
    )
    views = [view, *[o for o in extra if isinstance(o, FeatureView)]]
    return [entity, source, view, *extra, build_service(domain, views)]

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
from hitl_gate.domain import DomainConfig

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


def build_service(domain: DomainConfig, view: FeatureView) -> FeatureService:
    """The feature service of the current model version: what scoring retrieves, by name."""
    return FeatureService(
        name=domain.features.service,
        features=[view],
        description=f"Features served to model {domain.model.name} ({domain.features.service}).",
        owner=domain.features.owner,
        tags={**common_tags(domain), "model": domain.model.name},
    )


def feature_objects(domain: DomainConfig, source_path: Path) -> list:
    """Entity, FileSource, FeatureView and FeatureService of the domain, in apply order.

    `source_path` is the partition directory (or one Parquet file); it is made absolute so the
    registry stays valid from any working directory and any process.
    """
    entity = build_entity(domain)
    source = build_source(domain, source_path)
    view = build_view(domain, entity, source)
    return [entity, source, view, build_service(domain, view)]

"""Feature assets: derived features written to the Feast offline source, then read back
point-in-time through the domain's feature service, exactly as training reads them."""

from datetime import UTC, date, datetime

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, Output, ResourceParam

from assets.common import collect_columns, markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink
from hitl_gate.core.digests import row_digests
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import read_slices, row_count, slice_ranges
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import FeatureStoreResource, ModelRegistryResource


def feature_inputs(domain: DomainConfig) -> list[str]:
    """The validated columns this stage reads: ids, times, passthrough, derived and history."""
    names = [domain.case_id, "partition_date", domain.event_time, *domain.features.passthrough]
    for sql in domain.features.derived.values():
        names += pl.sql_expr(sql).meta.root_names()
    history = domain.features.applicant_history
    if history is not None:
        names += [history.key, history.amount]
    return names


def write_feature_sources(
    domain: DomainConfig,
    feature_store: FeatureStoreResource,
    days: list[date],
    validated_cases: pl.LazyFrame,
    ranges: list[tuple[int, int]],
    created: datetime,
) -> pl.DataFrame | None:
    """Compute the days' application features slice by slice into their Feast files.

    Reads only the validated columns features are computed from (not the 54 of the day).
    Returns the validated columns of a one-slice day (retrieval reuses them), else None.
    """
    from features.engineering import compute_features
    from features.store import FeaturePartitionWriter

    sliced = len(ranges) > 1
    writer = FeaturePartitionWriter(domain, feature_store.path, days, staged=sliced)
    whole = None
    try:
        for cases in read_slices(validated_cases, feature_inputs(domain), ranges):
            computed = compute_features(cases, domain, created_at=created)
            writer.write(computed, cases["partition_date"])
            whole = None if sliced else cases
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return whole


def build_feature_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `case_features` asset of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "case_features"),
        ins={"validated_cases": upstream(domain, "validated_cases")},
        description=(
            "Features retrieved point-in-time from Feast at each case's decision time through the "
            "feature service of the champion model version (`<model>_v<N>`; the declared "
            f"`{domain.features.service}` before any model exists), with a digest of the values."
        ),
        kinds={"feast", "duckdb"},
    )
    def case_features(
        context: AssetExecutionContext,
        validated_cases: pl.LazyFrame,
        feature_store: FeatureStoreResource,
        model_registry: ModelRegistryResource,
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output:
        from features.services import ensure_model_service
        from features.store import historical_features
        from models.registry import alias_ref

        # Slices of `slice_rows` cases: pass 1 writes the day's Feast file, pass 2 retrieves
        # point in time (which needs that file complete) and digests, one slice at a time.
        ranges = slice_ranges(row_count(validated_cases), io_manager.slice_rows)
        sliced = len(ranges) > 1
        created = datetime.now(UTC)  # one computation instant for every slice of the run
        whole = write_feature_sources(
            domain, feature_store, partition_days(context), validated_cases, ranges, created
        )
        history = domain.features.applicant_history
        if history is not None:
            from features.history import ledger_inputs, write_history_partitions

            write_history_partitions(
                collect_columns(validated_cases, ledger_inputs(domain)),
                domain,
                feature_store.path,
                partition_days(context),
                created_at=created,
            )
        store = feature_store.open(domain)
        # The champion decides these cases, so its version's service serves their features.
        champion = alias_ref(domain.model.name, model_registry.path)
        service = (
            ensure_model_service(store, domain, champion) if champion else domain.features.service
        )
        names = domain.features.names
        entity_columns = [
            domain.case_id,
            "partition_date",
            domain.event_time,
            *([history.key] if history is not None else []),
        ]
        missing = dict.fromkeys(names, 0)
        slices = read_slices(validated_cases, entity_columns, ranges) if sliced else [whole]
        with output_sink(io_manager, context, context.asset_key, sliced) as sink:
            for cases in slices:
                entities = cases.select(
                    domain.case_id,
                    "partition_date",
                    pl.col(domain.event_time).dt.replace_time_zone("UTC").alias("event_timestamp"),
                    *([history.key] if history is not None else []),
                )
                features = historical_features(store, domain, entities, service)
                if history is not None:  # a join key, not a feature: out of the digest and file
                    features = features.drop(history.key)
                features = features.with_columns(
                    pl.lit(service).alias("feature_service"),
                    row_digests(features, names).alias("feature_digest"),
                )
                for name, nulls in (
                    features.select(pl.col(names).null_count()).row(0, named=True).items()
                ):
                    missing[name] += nulls
                sink.write(features)
            output = sink.result()
        return Output(
            output,
            metadata={
                "rows": sink.rows,
                "slices": len(ranges),
                "feature_service": service,
                "null_counts": markdown_table(
                    pl.DataFrame({"feature": list(missing), "nulls": list(missing.values())})
                ),
            },
        )

    return [case_features]

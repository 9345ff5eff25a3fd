"""Feature assets: derived features written to the Feast offline source, then read back
point-in-time through the domain's feature service, exactly as training reads them."""

from datetime import UTC, datetime

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, Output, ResourceParam

from assets.common import collect_columns, markdown_metadata, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import read_slices, row_count, slice_ranges, write_each
from pipelines.io_managers import PolarsParquetIOManager
from pipelines.resources import FeatureStoreResource, ModelRegistryResource


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
        from features.case_features import (
            NullCounts,
            entity_columns,
            feature_inputs,
            served_features,
            serving_service,
            write_feature_sources,
        )
        from models.registry import alias_ref

        days = partition_days(context)
        # Slices of `slice_rows` cases: pass 1 writes the day's Feast file, pass 2 retrieves
        # point in time (which needs that file complete) and digests, one slice at a time.
        ranges = slice_ranges(row_count(validated_cases), io_manager.slice_rows)
        sliced = len(ranges) > 1
        created = datetime.now(UTC)  # one computation instant for every slice of the run
        whole = write_feature_sources(
            domain,
            feature_store.path,
            days,
            read_slices(validated_cases, feature_inputs(domain), ranges),
            sliced=sliced,
            created=created,
        )
        if domain.features.applicant_history is not None:
            from features.history import ledger_inputs, write_history_partitions

            write_history_partitions(
                collect_columns(validated_cases, ledger_inputs(domain)),
                domain,
                feature_store.path,
                days,
                created_at=created,
            )
        store = feature_store.open(domain)
        service = serving_service(store, domain, alias_ref(domain.model.name, model_registry.path))
        missing = NullCounts(domain.features.names)
        slices = read_slices(validated_cases, entity_columns(domain), ranges) if sliced else [whole]
        with output_sink(io_manager, context, context.asset_key, sliced) as sink:

            def serve(cases: pl.DataFrame) -> pl.DataFrame:
                features = served_features(store, domain, cases, service)
                missing.add(features)
                return features

            write_each(slices, serve, sink)
            output = sink.result()
        return Output(
            output,
            metadata={
                "rows": sink.rows,
                "slices": len(ranges),
                "feature_service": service,
                "null_counts": markdown_metadata(missing.frame()),
            },
        )

    return [case_features]

"""Feature assets: derived features written to the Feast offline source, then read back
point-in-time through the domain's feature service, exactly as training reads them."""

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, Output

from assets.common import collect_columns, markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.digests import row_digests
from hitl_gate.domain import DomainConfig
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
    ) -> Output[pl.DataFrame]:
        from features.engineering import compute_features
        from features.services import ensure_model_service
        from features.store import historical_features, write_feature_partition
        from models.registry import alias_ref

        # The columns features are computed from, not the whole validated day (54 columns).
        validated_cases = collect_columns(validated_cases, feature_inputs(domain))
        computed = compute_features(validated_cases, domain)
        for day in partition_days(context):
            todays = validated_cases[domain.case_id].filter(
                validated_cases["partition_date"] == day
            )
            write_feature_partition(
                computed.filter(pl.col(domain.case_id).is_in(todays.implode())),
                domain,
                feature_store.path,
                day,
            )
        history = domain.features.applicant_history
        if history is not None:
            from features.history import write_history_partitions

            write_history_partitions(
                validated_cases, domain, feature_store.path, partition_days(context)
            )
        store = feature_store.open(domain)
        # The champion decides these cases, so its version's service serves their features.
        champion = alias_ref(domain.model.name, model_registry.path)
        service = (
            ensure_model_service(store, domain, champion) if champion else domain.features.service
        )
        entities = validated_cases.select(
            domain.case_id,
            "partition_date",
            pl.col(domain.event_time).dt.replace_time_zone("UTC").alias("event_timestamp"),
            *([history.key] if history is not None else []),
        )
        features = historical_features(store, domain, entities, service)
        if history is not None:  # a join key, not a feature: kept out of the digest and file
            features = features.drop(history.key)
        names = domain.features.names
        features = features.with_columns(
            pl.lit(service).alias("feature_service"),
            row_digests(features, names).alias("feature_digest"),
        )
        missing = features.select(pl.col(names).null_count()).row(0, named=True)
        return Output(
            features,
            metadata={
                "rows": features.height,
                "feature_service": service,
                "null_counts": markdown_table(
                    pl.DataFrame({"feature": list(missing), "nulls": list(missing.values())})
                ),
            },
        )

    return [case_features]

"""Ingestion assets: landing files in, validated cases and quarantined rows out."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MetadataValue,
    Output,
    asset,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_partitions, partition_days
from hitl_gate.audit.store import replace_partition_slice
from hitl_gate.domain import DomainConfig
from pipelines.resources import AuditDatabase, LandingZone


def build_ingestion_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `raw_cases` and `validated_cases` assets of one domain."""

    @asset(
        key=stage_key(domain, "raw_cases"),
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
        description=(
            f"Files that landed for {domain.name} on the partition day, identified by SHA-256: "
            "the same bytes arriving twice are one file."
        ),
        kinds={"polars"},
    )
    def raw_cases(context: AssetExecutionContext, landing: LandingZone) -> Output[pl.DataFrame]:
        from hitl_gate.ingest import discover_landing_files

        files = [
            f
            for day in partition_days(context)
            for f in discover_landing_files(landing.path, domain.landing_subdir, day)
        ]
        frame = pl.DataFrame(
            {
                "partition_date": [f.partition_date for f in files],
                "file_path": [str(f.path) for f in files],
                "file_sha256": [f.sha256 for f in files],
                "size_bytes": [f.size_bytes for f in files],
                "arrived_at": [f.arrived_at for f in files],
            },
            schema={
                "partition_date": pl.Date,
                "file_path": pl.String,
                "file_sha256": pl.String,
                "size_bytes": pl.Int64,
                "arrived_at": pl.Datetime("us", "UTC"),
            },
        ).unique("file_sha256", keep="first", maintain_order=True)
        return Output(
            frame,
            metadata={
                "files": len(frame),
                "bytes": int(frame["size_bytes"].sum() or 0),
                "landing_folder": MetadataValue.path(str(landing.path / domain.landing_subdir)),
            },
        )

    @asset(
        key=stage_key(domain, "validated_cases"),
        group_name=domain.name,
        partitions_def=daily_partitions(domain),
        backfill_policy=BackfillPolicy.single_run(),
        ins={"raw_cases": upstream(domain, "raw_cases")},
        description=(
            f"Rows of the day's files that satisfy contract v{domain.contract.version}; every "
            "other row is quarantined with file, row, column and reason (audit table quarantine)."
        ),
        kinds={"polars", "pandera", "duckdb"},
    )
    def validated_cases(
        context: AssetExecutionContext, raw_cases: pl.DataFrame, audit_db: AuditDatabase
    ) -> Output[pl.DataFrame]:
        from hitl_gate.contract import contract_digest
        from hitl_gate.ingest import LandingFile, ingest_files

        files = [
            LandingFile(
                path=Path(row["file_path"]),
                sha256=row["file_sha256"],
                size_bytes=row["size_bytes"],
                partition_date=row["partition_date"],
                arrived_at=row["arrived_at"],
            )
            for row in raw_cases.iter_rows(named=True)
        ]
        result = ingest_files(files, domain.contract, domain.case_id)
        digest = contract_digest(domain.contract)
        now = datetime.now(UTC)
        file_rows = result.files.with_columns(
            pl.lit(domain.name).alias("domain"),
            pl.lit(domain.contract.version).alias("contract_version"),
            pl.lit(digest).alias("contract_digest"),
            pl.lit(context.run.run_id).alias("run_id"),
            pl.lit(now).alias("recorded_at"),
        )
        quarantine = result.quarantine.rename(
            {"column": "column_name", "check": "check_name"}
        ).with_columns(
            pl.lit(domain.name).alias("domain"), pl.lit(context.run.run_id).alias("run_id")
        )
        days = partition_days(context)
        with audit_db.connect() as con:
            replace_partition_slice(con, "input_files", file_rows, domain.name, days)
            replace_partition_slice(con, "quarantine", quarantine, domain.name, days)
        accepted = result.accepted.with_columns(
            pl.lit(domain.contract.version).alias("_contract_version"),
            pl.lit(digest).alias("_contract_digest"),
        )
        rows_read = int(result.files["rows_read"].sum() or 0)
        quarantined = int(result.files["rows_quarantined"].sum() or 0)
        return Output(
            accepted,
            metadata={
                "rows_read": rows_read,
                "rows_accepted": accepted.height,
                "rows_quarantined": quarantined,
                "files_rejected": int((result.files["status"] == "rejected").sum()),
                "contract_version": domain.contract.version,
                "quarantine_sample": MetadataValue.md(markdown_table(result.quarantine)),
            },
        )

    return [raw_cases, validated_cases]

"""Ingestion assets: landing files in, validated cases and quarantined rows out."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.database import replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import AuditDatabase, LandingZone

RAW_CASES_SCHEMA = {
    "partition_date": pl.Date,
    "file_path": pl.String,
    "file_sha256": pl.String,
    "size_bytes": pl.Int64,
    "arrived_at": pl.Datetime("us", "UTC"),
    "file_version": pl.Int64,
    "duplicate_of": pl.String,
}


def build_ingestion_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `raw_cases` and `validated_cases` assets of one domain."""

    @daily_stage_asset(
        domain,
        stage_key(domain, "raw_cases"),
        description=(
            f"Files that landed for {domain.name} on the partition day, identified by SHA-256: "
            "the same bytes arriving twice are one file."
        ),
        kinds={"polars"},
    )
    def raw_cases(
        context: AssetExecutionContext, landing: LandingZone, audit_db: AuditDatabase
    ) -> Output[pl.DataFrame]:
        from hitl_gate.ingest.landing import discover_landing_files
        from hitl_gate.ingest.landing_registry import register_files

        files = [
            f
            for day in partition_days(context)
            for f in discover_landing_files(landing.path, domain.landing_subdir, day)
        ]
        with audit_db.connect() as con:
            registered = register_files(
                con, domain.name, files, context.run.run_id, datetime.now(UTC)
            )
        frame = pl.DataFrame(
            {
                "partition_date": [r.file.partition_date for r in registered],
                "file_path": [str(r.file.path) for r in registered],
                "file_sha256": [r.file.sha256 for r in registered],
                "size_bytes": [r.file.size_bytes for r in registered],
                "arrived_at": [r.file.arrived_at for r in registered],
                "file_version": [r.version for r in registered],
                "duplicate_of": [r.duplicate_of for r in registered],
            },
            schema=RAW_CASES_SCHEMA,
        )
        duplicates = frame.filter(pl.col("duplicate_of").is_not_null())
        return Output(
            frame,
            metadata={
                "files": frame.height,
                "duplicate_files": duplicates.height,
                "bytes": int(frame["size_bytes"].sum() or 0),
                "landing_folder": MetadataValue.path(str(landing.path / domain.landing_subdir)),
                "files_seen": MetadataValue.md(
                    markdown_table(
                        frame.select(
                            pl.col("file_path").str.split("/").list.last().alias("file"),
                            pl.col("file_sha256").str.slice(0, 12).alias("sha256"),
                            "file_version",
                            "duplicate_of",
                        ),
                        max_rows=20,
                    )
                ),
            },
        )

    @daily_stage_asset(
        domain,
        stage_key(domain, "validated_cases"),
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
        from hitl_gate.ingest.landing import (
            LandingFile,
            duplicate_files_frame,
            ingest_files,
            withhold_known_cases,
        )
        from hitl_gate.ingest.landing_registry import (
            ContractVersionConflict,
            cases_accepted_elsewhere,
            record_accepted_cases,
            record_contract,
        )
        from hitl_gate.quality.contract import contract_digest

        def landing_file(row: dict) -> LandingFile:
            return LandingFile(
                path=Path(row["file_path"]),
                sha256=row["file_sha256"],
                size_bytes=row["size_bytes"],
                partition_date=row["partition_date"],
                arrived_at=row["arrived_at"],
            )

        fresh = raw_cases.filter(pl.col("duplicate_of").is_null())
        repeats = raw_cases.filter(pl.col("duplicate_of").is_not_null())
        result = ingest_files(
            [landing_file(r) for r in fresh.iter_rows(named=True)], domain.contract, domain.case_id
        )
        digest = contract_digest(domain.contract)
        now = datetime.now(UTC)
        run_id = context.run.run_id
        days = partition_days(context)
        with audit_db.connect() as con:
            try:
                record_contract(con, domain.name, domain.contract, digest, run_id, now)
            except ContractVersionConflict as exc:
                raise Failure(description=str(exc)) from exc
            known = cases_accepted_elsewhere(
                con, domain.name, result.accepted[domain.case_id], days
            )
            result = withhold_known_cases(result, known, domain.case_id)
            duplicates = duplicate_files_frame(
                [(landing_file(r), r["duplicate_of"]) for r in repeats.iter_rows(named=True)]
            )
            file_rows = pl.concat([result.files, duplicates]).with_columns(
                pl.lit(domain.name).alias("domain"),
                pl.lit(domain.contract.version).alias("contract_version"),
                pl.lit(digest).alias("contract_digest"),
                pl.lit(run_id).alias("run_id"),
                pl.lit(now).alias("recorded_at"),
            )
            quarantine = result.quarantine.rename(
                {"column": "column_name", "check": "check_name"}
            ).with_columns(pl.lit(domain.name).alias("domain"), pl.lit(run_id).alias("run_id"))
            replace_partition_slice(con, "input_files", file_rows, domain.name, days)
            replace_partition_slice(con, "quarantine", quarantine, domain.name, days)
            record_accepted_cases(con, domain.name, result.accepted, domain.case_id, days, run_id)
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
                "files_duplicate": duplicates.height,
                "case_ids_held_by_other_partitions": known.height,
                "contract_digest": digest,
                "contract_version": domain.contract.version,
                "quarantine_sample": MetadataValue.md(markdown_table(result.quarantine)),
            },
        )

    return [raw_cases, validated_cases]

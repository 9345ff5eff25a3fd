"""Ingestion assets: landing files in, validated cases and quarantined rows out."""

from collections import Counter
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
from assets.partial_seal import seal_unless_run_seals
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.domain import DomainConfig
from hitl_gate.ingest.day_batch import read_new_files, record_day_batch, registered_files_frame
from hitl_gate.ingest.landing_registry import (
    ContractVersionConflict,
    record_listings,
    register_files,
)
from hitl_gate.ingest.listing import landing_rules, list_day_folder
from hitl_gate.ingest.names import shown
from hitl_gate.ingest.report import quarantine_sample
from pipelines.resources import AuditDatabase, LandingZone


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
        rules = landing_rules(domain, landing.settle_seconds)
        folders = {
            day: landing.path / domain.landing_subdir / day.isoformat()
            for day in partition_days(context)
        }
        listings = [list_day_folder(folder, day, rules) for day, folder in folders.items()]
        files = [f for listing in listings for f in listing.files]
        refused = [r for listing in listings for r in listing.refused]
        now = datetime.now(UTC)
        with audit_db.connect() as con:
            registered = register_files(con, domain.name, files, context.run.run_id, now)
            record_listings(
                con,
                domain.name,
                listings,
                {day: str(folder) for day, folder in folders.items()},
                context.run.run_id,
                now,
            )
        for r in refused:
            context.log.warning(r.message)
        frame = registered_files_frame(registered)
        duplicates = frame.filter(pl.col("duplicate_of").is_not_null())
        return Output(
            frame,
            metadata={
                "files": frame.height,
                "files_seen": sum(listing.seen for listing in listings),
                "files_refused": len(refused),
                "files_refused_by_reason": MetadataValue.json(
                    dict(Counter(r.reason for r in refused))
                ),
                "refused_files": MetadataValue.md(
                    markdown_table(
                        pl.DataFrame(
                            {
                                "file": [shown(r.path.name) for r in refused],
                                "reason": [r.reason for r in refused],
                            },
                            schema={"file": pl.String, "reason": pl.String},
                        ),
                        max_rows=20,
                    )
                ),
                "duplicate_files": duplicates.height,
                "bytes": int(frame["size_bytes"].sum() or 0),
                "landing_folder": MetadataValue.path(str(landing.path / domain.landing_subdir)),
                "files_taken": MetadataValue.md(
                    markdown_table(
                        frame.select(
                            pl.Series(
                                "file", [shown(Path(p).name) for p in frame["file_path"]], pl.String
                            ),
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
        context: AssetExecutionContext,
        raw_cases: pl.DataFrame,
        landing: LandingZone,
        audit_db: AuditDatabase,
    ) -> Output[pl.DataFrame]:
        result = read_new_files(raw_cases, domain, landing.max_gunzip_bytes)
        with audit_db.connect() as con:
            try:
                batch = record_day_batch(
                    con,
                    domain,
                    result,
                    raw_cases,
                    partition_days(context),
                    context.run.run_id,
                    datetime.now(UTC),
                )
            except ContractVersionConflict as exc:
                raise Failure(description=str(exc)) from exc
        # A run with no end-of-run seal (ingest only) seals the days' rows itself (segments).
        sealed = seal_unless_run_seals(context, domain, "validated_cases", audit_db)
        return Output(
            batch.accepted,
            metadata={
                "rows_read": batch.rows_read,
                "rows_accepted": batch.accepted.height,
                "rows_quarantined": batch.rows_quarantined,
                "files_rejected": batch.files_rejected,
                "files_rejected_by_check": MetadataValue.json(
                    dict(Counter(batch.quarantine.filter(pl.col("row_number").is_null())["check"]))
                ),
                "files_duplicate": batch.duplicate_files,
                "case_ids_held_by_other_partitions": batch.cases_held_elsewhere,
                "contract_digest": batch.contract_digest,
                "contract_version": batch.contract_version,
                "audit_entries_appended": sealed.appended if sealed is not None else 0,
                "quarantine_sample": MetadataValue.md(
                    markdown_table(quarantine_sample(batch.quarantine))
                ),
            },
        )

    return [raw_cases, validated_cases]

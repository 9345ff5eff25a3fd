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
    ResourceParam,
)

from assets.common import markdown_table, stage_key, upstream
from assets.partial_seal import seal_unless_run_seals
from assets.partitions import daily_stage_asset, partition_days
from assets.slices import output_sink
from hitl_gate.core.day_files import temporary_name
from hitl_gate.core.domain import DomainConfig
from hitl_gate.ingest.accepted_spill import AcceptedSpill
from hitl_gate.ingest.day_batch import (
    read_new_files,
    record_day_batch,
    registered_files_frame,
)
from hitl_gate.ingest.landing_registry import (
    ContractVersionConflict,
    record_listings,
    register_files,
)
from hitl_gate.ingest.listing import landing_rules, list_day_folder
from hitl_gate.ingest.names import shown
from hitl_gate.ingest.report import quarantine_sample
from pipelines.io_managers import PolarsParquetIOManager
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
        io_manager: ResourceParam[PolarsParquetIOManager],
    ) -> Output:
        # Validated `slice_rows` rows at a time; accepted rows beyond one slice wait in a
        # scratch file beside the output until the day is accounted for, then are written to
        # the day's file slice by slice (a day of one slice stays one frame in memory).
        folder = Path(io_manager.base_dir).joinpath(*context.asset_key.path)
        folder.mkdir(parents=True, exist_ok=True)
        spill = AcceptedSpill(temporary_name(folder / "accepted.arrow"), io_manager.slice_rows)
        try:
            result = read_new_files(raw_cases, domain, landing.max_gunzip_bytes, spill)
            with audit_db.connect() as con:
                batch = record_day_batch(
                    con,
                    domain,
                    result,
                    raw_cases,
                    partition_days(context),
                    context.run.run_id,
                    datetime.now(UTC),
                )
            with output_sink(io_manager, context, context.asset_key, spill.spilled) as sink:
                spill.drain(batch.withheld, sink.write)
        except ContractVersionConflict as exc:
            raise Failure(description=str(exc)) from exc
        finally:
            spill.discard()
        # A run with no end-of-run seal (ingest only) seals the days' rows itself (segments).
        sealed = seal_unless_run_seals(context, domain, "validated_cases", audit_db)
        return Output(
            sink.result(),
            metadata={
                "rows_read": batch.rows_read,
                "rows_accepted": sink.rows,
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

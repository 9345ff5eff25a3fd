"""Asset checks: invariants that must hold before data flows on (blocking) or be seen at once."""

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    asset_check,
)

from assets.common import stage_key
from assets.partitions import partition_days
from hitl_gate.core.database import query_frame
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.slices import select_present
from hitl_gate.ingest.landing_registry import files_balance as files_balance_by_day
from hitl_gate.routing.invariants import route_violations
from pipelines.resources import AuditDatabase


def build_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """The checks of one domain's pipeline."""

    @asset_check(
        asset=stage_key(domain, "validated_cases"),
        blocking=True,
        description="Rows read = rows accepted + rows quarantined, for every file of the day.",
    )
    def rows_balance(
        context: AssetCheckExecutionContext, audit_db: AuditDatabase
    ) -> AssetCheckResult:
        days = partition_days(context)
        with audit_db.connect() as con:
            files = query_frame(
                con,
                "SELECT file_path, rows_read, rows_accepted, rows_quarantined FROM input_files "
                "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, days],
            )
        broken = files.filter(
            pl.col("rows_read") != pl.col("rows_accepted") + pl.col("rows_quarantined")
        )
        return AssetCheckResult(
            passed=broken.height == 0,
            metadata={
                "files": files.height,
                "rows_read": int(files["rows_read"].sum() or 0),
                "rows_accepted": int(files["rows_accepted"].sum() or 0),
                "rows_quarantined": int(files["rows_quarantined"].sum() or 0),
                "unbalanced_files": broken["file_path"].to_list(),
            },
        )

    @asset_check(
        asset=stage_key(domain, "validated_cases"),
        blocking=True,
        description=(
            "Files seen in the day's landing folder = files ingested (read, rejected or a "
            "repeat) + files refused with a reason: no file is silently skipped."
        ),
    )
    def files_balance(
        context: AssetCheckExecutionContext, audit_db: AuditDatabase
    ) -> AssetCheckResult:
        with audit_db.connect() as con:
            days = files_balance_by_day(con, domain.name, partition_days(context))
        broken = days.filter(~pl.col("balanced"))
        return AssetCheckResult(
            passed=broken.height == 0,
            metadata={
                "files_seen": int(days["files_seen"].sum() or 0),
                "files_ingested": int(days["files_ingested"].sum() or 0),
                "files_refused": int(days["files_refused"].sum() or 0),
                "unbalanced_days": [str(d) for d in broken["partition_date"].to_list()],
            },
        )

    @asset_check(
        asset=stage_key(domain, "risk_scores"),
        blocking=True,
        description="Every case has a probability in [0, 1], a band and a resolved model version.",
    )
    def scores_complete(risk_scores: pl.LazyFrame) -> AssetCheckResult:
        # Counted by a scan of three columns: the day's rows are never held as one frame.
        bad = (
            pl.col("pd").is_null()
            | ~pl.col("pd").is_between(0.0, 1.0)
            | pl.col("risk_band").is_null()
            | pl.col("model_version").is_null()
        )
        rows, incomplete = (
            risk_scores.lazy()
            .select(pl.len().alias("rows"), bad.sum().alias("bad"))
            .collect()
            .row(0)
        )
        return AssetCheckResult(
            passed=incomplete == 0,
            metadata={"rows": int(rows), "incomplete_rows": int(incomplete)},
        )

    @asset_check(
        asset=stage_key(domain, "routed_decisions"),
        blocking=True,
        description="Every case has exactly one route from the allowed set and a policy version.",
    )
    def one_route_per_case(routed_decisions: pl.LazyFrame) -> AssetCheckResult:
        from policies.capacity import CARRIED_FROM

        # Queries on three columns of the stored day (`route_violations`), never one frame.
        found = route_violations(
            select_present(routed_decisions, [domain.case_id, "route", CARRIED_FROM]),
            domain.case_id,
        )
        return AssetCheckResult(
            passed=found.passed,
            metadata={
                "rows": found.rows,
                "bad_routes": found.bad_routes,
                "duplicates": found.duplicates,
            },
        )

    @asset_check(
        asset=stage_key(domain, "audit_lineage"),
        description="Each day: rows read = quarantined + executed + pending review.",
    )
    def every_case_accounted_for(audit_lineage: pl.DataFrame) -> AssetCheckResult:
        unbalanced = audit_lineage.filter(~pl.col("balanced"))
        return AssetCheckResult(
            passed=unbalanced.height == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "days": audit_lineage.height,
                "unbalanced_days": [str(d) for d in unbalanced["partition_date"].to_list()],
            },
        )

    return [
        rows_balance,
        files_balance,
        scores_complete,
        one_route_per_case,
        every_case_accounted_for,
    ]

"""Expectation suites as Dagster asset checks: validated cases, and features before scoring.

The suites are declared in the domain's expectations file and run as SQL inside DuckDB
(`hitl_gate/expectations.py` says why not GE's pandas engine). Each run writes a Data Docs page
under the home folder; its path is in the check's metadata.
"""

from datetime import date

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.common import markdown_table, stage_key
from assets.partitions import partition_days
from hitl_gate.audit.store import query_frame
from hitl_gate.domain import DomainConfig
from pipelines.resources import AuditDatabase, DataDocs


def _history(audit_db: AuditDatabase, domain: DomainConfig, days: list[date]) -> dict[date, int]:
    """Accepted rows per earlier day (from input_files), for the trailing row-count check."""
    with audit_db.connect(read_only=True) as con:
        frame = query_frame(
            con,
            "SELECT partition_date, sum(rows_accepted)::BIGINT AS n FROM input_files "
            "WHERE domain = ? AND partition_date < ? AND partition_date >= ? - INTERVAL 60 DAY "
            "GROUP BY ALL",
            [domain.name, max(days), min(days)],
        )
    return dict(frame.rows())


def build_expectation_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """One check per suite of the domain's expectations file (none without a file)."""
    if domain.expectations is None:
        return []
    from hitl_gate.expectations import load_expectations

    config = load_expectations(domain.source_dir / domain.expectations)
    return [_suite_check(domain, stage, suite.blocking) for stage, suite in config.suites.items()]


def _suite_check(domain: DomainConfig, stage: str, blocking: bool) -> AssetChecksDefinition:
    @asset_check(
        asset=stage_key(domain, stage),
        name=f"{stage}_expectations",
        blocking=blocking,
        description=(
            f"Distribution expectations on {stage} (null rates, ranges, sets, row counts vs the "
            f"trailing days), from {domain.expectations}, run as SQL in DuckDB."
        ),
    )
    def expectations_check(
        context: AssetCheckExecutionContext,
        frame: pl.DataFrame,
        audit_db: AuditDatabase,
        data_docs: DataDocs,
    ) -> AssetCheckResult:
        import duckdb

        from hitl_gate.expectations import (
            load_expectations,
            outcomes_frame,
            run_suite,
            write_data_docs,
        )

        suite = load_expectations(domain.source_dir / domain.expectations).suites[stage]
        days = partition_days(context)
        con = duckdb.connect()
        try:
            outcomes = run_suite(con, frame, suite, _history(audit_db, domain, days))
        finally:
            con.close()
        page = write_data_docs(data_docs.path, domain.name, stage, days, outcomes)
        table = outcomes_frame(outcomes)
        failed = table.filter(~pl.col("success"))
        return AssetCheckResult(
            passed=failed.height == 0,
            severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
            metadata={
                "rows": frame.height,
                "expectations": table.height,
                "failed": failed["label"].to_list(),
                "results": MetadataValue.md(markdown_table(table, max_rows=50)),
                "data_docs": MetadataValue.path(str(page)),
            },
        )

    return expectations_check

"""Expectation suites as Dagster asset checks: validated cases, and features before scoring.

The suites are declared in the domain's expectations file and run by Great Expectations' SQL
engine on DuckDB, next to the stored Parquet (`hitl_gate/quality/gx_suites.py`). Each run adds GE
Data Docs pages under the home folder; their paths are in the check's metadata.
"""

from pathlib import Path

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
from hitl_gate.core.domain import DomainConfig
from pipelines.resources import DataDocs


def build_expectation_checks(domain: DomainConfig) -> list[AssetChecksDefinition]:
    """One check per suite of the domain's expectations file (none without a file)."""
    if domain.expectations is None:
        return []
    from hitl_gate.quality.expectations import load_expectations

    config = load_expectations(domain.source_dir / domain.expectations)
    return [_suite_check(domain, stage, suite.blocking) for stage, suite in config.suites.items()]


def _suite_check(domain: DomainConfig, stage: str, blocking: bool) -> AssetChecksDefinition:
    @asset_check(
        asset=stage_key(domain, stage),
        name=f"{stage}_expectations",
        blocking=blocking,
        description=(
            f"Distribution expectations on {stage} (null rates, ranges, sets, row counts vs the "
            f"trailing days), from {domain.expectations}, run by Great Expectations on DuckDB."
        ),
    )
    def expectations_check(
        context: AssetCheckExecutionContext, data_docs: DataDocs
    ) -> AssetCheckResult:
        from hitl_gate.quality.gx_suites import GxLocations, run_declared_suite

        where = GxLocations(
            project_root=Path(data_docs.gx_root),
            data_docs=data_docs.path,
            warehouse=Path(data_docs.warehouse),
            lock_wait_s=data_docs.lock_wait_s,
        )
        run = run_declared_suite(where, domain, stage, partition_days(context), context.run.run_id)
        table = run.table()
        return AssetCheckResult(
            passed=run.success,
            severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
            metadata={
                "expectations": table.height,
                "failed": run.failed,
                "results": MetadataValue.md(markdown_table(table, max_rows=50)),
                "data_docs": MetadataValue.path(str(run.first_page)),
                "data_docs_pages": [str(p) for p in run.pages],
                "data_docs_index": MetadataValue.path(str(run.index)),
                "engine": "great_expectations (SQL on DuckDB)",
            },
        )

    return expectations_check

"""Observability asset: decision metrics per day, anomaly checks, traces and the HTML report.

`decision_metrics` runs after `audit_lineage` in the daily and review-loop jobs. It aggregates
the audit database's `case_stage_times` in DuckDB (`observability.metrics_db`, `checks_db`:
never a frame per case), reads the window's feature partitions by DuckDB, and writes: the long
`decision_metrics` table, Dagster metadata (Markdown tables), OTLP trace lines (every case of
small days, a consistent sample of large ones; built and streamed by DuckDB,
`hitl_gate/observability/traces.py`) under `<home>/traces/<domain>/`, and an HTML report under
`<home>/reports/<domain>/`. Its anomaly checks are declared on the asset and evaluated in the
same step, from the same aggregates.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    DagsterEventType,
    MetadataValue,
    Output,
)
from pydantic import Field

from assets.common import markdown_metadata, readable_number, stage_key
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.domain import DomainConfig
from hitl_gate.observability.anomalies import Finding, Thresholds
from hitl_gate.observability.daily import (
    TRACE_MAX_CASES_PER_DAY,
    MetricSettings,
    MetricsEvaluation,
    StageMaterialization,
    describe_model_runs,
    evaluate_metrics_db,
    model_run_folders,
    read_metric_inputs,
    read_period_metrics,
    record_stage_times,
    runs_without_stage_times,
    store_metrics,
    write_run_report,
)
from hitl_gate.observability.metrics_db import METRICS_MEMORY_LIMIT
from hitl_gate.observability.outcomes_db import OutcomeFiles
from hitl_gate.observability.report import PERIOD_REPORT
from hitl_gate.observability.traces import TraceFile
from pipelines.resources import (
    AuditDatabase,
    DataDocs,
    FeatureStoreResource,
    LandingZone,
    ModelRegistryResource,
    ObservabilityOutputs,
    ReviewWorkspace,
)

CHECKS = {
    "route_mix_shift": "Share of each route per day vs the trailing baseline (binomial z).",
    "approval_rate_shift": "Final approval rate per day vs the trailing baseline.",
    "override_rate_spike": "Reviewer override rate per day vs the trailing baseline.",
    "score_drift_psi": "PSI of the model probability per day vs the trailing baseline.",
    "feature_drift_psi": "PSI of every model feature per day vs the trailing baseline.",
    "volume_drop": "Cases per day vs the median of the trailing days.",
    "automation_bias": "Reviewers with near-zero time per case or override rate.",
    "sla_breaches": "Review cases answered after, or still open past, their due time.",
    "fairness_adverse_impact": (
        "Per protected attribute and stage (model band, policy route, human verdict, final "
        "action): approval rate against the reference group (four-fifths rule, with a "
        "confidence interval; domain `fairness` thresholds warn and block)."
    ),
    "fairness_score_gap": "Standardised mean difference of PD between protected groups.",
}


class MetricsConfig(Config):
    """How metrics and checks are computed (run config of the `decision_metrics` asset)."""

    decline_bands: list[str] = Field(
        default_factory=list,
        description="Risk bands whose proposed action is decline; empty = upper half of bands.",
    )
    baseline_days: int = Thresholds.baseline_days
    min_baseline_days: int = Thresholds.min_baseline_days
    psi_warn: float = Thresholds.psi_warn
    psi_error: float = Thresholds.psi_error
    bias_min_seconds_per_case: float = Thresholds.bias_min_seconds_per_case
    write_traces: bool = True
    trace_max_cases_per_day: int | None = Field(
        default=TRACE_MAX_CASES_PER_DAY,
        description=(
            "Trace every case of a day up to this many, else a consistent sample of about this "
            "many by trace id (None = every case; stage times of all cases stay in DuckDB)."
        ),
    )
    write_report: bool = True
    duckdb_memory_limit: str = Field(
        default=METRICS_MEMORY_LIMIT,
        description=(
            "DuckDB's memory limit while the step reads and aggregates the cases (e.g. '512MB'); "
            "beyond it the case facts and sorts spill to disk, so the step's peak stays bounded "
            "whatever the day's size."
        ),
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            baseline_days=self.baseline_days,
            min_baseline_days=self.min_baseline_days,
            psi_warn=self.psi_warn,
            psi_error=self.psi_error,
            bias_min_seconds_per_case=self.bias_min_seconds_per_case,
        )

    def settings(self) -> MetricSettings:
        """The run config as the library's plain settings."""
        return MetricSettings(
            thresholds=self.thresholds(),
            decline_bands=tuple(self.decline_bands),
            write_traces=self.write_traces,
            trace_max_cases_per_day=self.trace_max_cases_per_day,
            memory_limit=self.duckdb_memory_limit,
        )


def stage_materializations(
    context: AssetExecutionContext, domain: DomainConfig, run_ids: list[str]
) -> list[StageMaterialization]:
    """When each stage of `domain` materialised each partition in `run_ids` (Dagster event log)."""
    events = []
    for run_id in run_ids:
        records = context.instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None or event.asset_key is None or event.partition is None:
                continue
            if event.asset_key.path[0] != domain.name:
                continue
            events.append(
                StageMaterialization(
                    run_id=run_id,
                    stage=event.asset_key.path[-1],
                    partition_date=date.fromisoformat(event.partition),
                    materialized_at=datetime.fromtimestamp(
                        record.event_log_entry.timestamp, tz=UTC
                    ),
                )
            )
    return events


def check_result(finding: Finding) -> AssetCheckResult:
    """A Dagster check result that says what was compared and the numbers.

    Dagster's checks pass or fail; a check that had nothing to judge is recorded as not failing
    (these checks never block), its description and `result` saying "not judged" and why, so
    the UI never shows it as a judgement that was made.
    """
    prefix = "" if finding.judged else "Not judged: "
    return AssetCheckResult(
        check_name=finding.check,
        passed=finding.passed,
        severity=AssetCheckSeverity.ERROR
        if finding.severity == "ERROR"
        else AssetCheckSeverity.WARN,
        description=prefix + finding.summary,
        metadata={
            "result": finding.state,
            "judged": finding.judged,
            "summary": MetadataValue.md(prefix + finding.summary),
            "details": markdown_metadata(finding.details, max_rows=15),
            "rows_flagged": 0 if finding.passed else finding.details.height,
        },
    )


def model_version_links(
    observability: ObservabilityOutputs, model_runs: pl.DataFrame
) -> dict[str, MetadataValue]:
    """A link to the MLflow UI page of each model version that decided the days (when the
    deployment names its MLflow UI, `HITL_MLFLOW_UI_URL`)."""
    links = {}
    for run in model_runs.iter_rows(named=True):
        url = observability.model_version_url(run["model_name"], run["model_version"])
        if url is not None:
            links[f"mlflow_{run['model_name']}_v{run['model_version']}"] = MetadataValue.url(url)
    return links


def _metadata_tables(metrics: pl.DataFrame) -> dict[str, MetadataValue]:
    """Markdown tables of the headline metrics, summed or worst over the run's days."""

    def table(metric_prefix: str, dimension: str, agg: pl.Expr) -> MetadataValue:
        part = metrics.filter(
            pl.col("metric").str.starts_with(metric_prefix) & (pl.col("dimension") == dimension)
        )
        pivot = part.group_by("key", "metric").agg(agg).sort("key", "metric")
        wide = pivot.pivot(on="metric", index="key", values="value") if pivot.height else pivot
        return markdown_metadata(wide, max_rows=20)

    total = pl.col("value").sum()
    worst = pl.col("value").max().round(1)
    return {
        "volumes_by_route": table("cases", "route", total),
        "volumes_by_queue": table("cases", "queue", total),
        "volumes_by_risk_band": table("cases", "risk_band", total),
        "final_actions": table("cases", "final_action", total),
        "overrides_by_reviewer": table("overrides", "reviewer", total),
        "overrides_by_rule": table("overrides", "rule", total),
        "time_to_decision_s_worst_day": table("time_to_decision", "decided_by", worst),
        "stage_latency_s_worst_day": table("stage_latency", "stage", worst),
        "review_queues": table("queue_depth", "queue", total),
    }


def _evaluation_metadata(evaluation: MetricsEvaluation) -> dict[str, object]:
    """Counts, the checks' one-line outcomes and the headline metric tables."""
    return {
        "days": len(evaluation.days),
        "cases": evaluation.cases,
        "metric_rows": evaluation.metrics.height,
        "checks_failed": evaluation.checks_failed,
        "checks_not_judged": evaluation.checks_not_judged,
        "checks": MetadataValue.md(
            "\n".join(f"- {f.describe()}" for f in evaluation.findings) or "_none_"
        ),
        **_metadata_tables(evaluation.metrics),
    }


def _trace_metadata(folder: Path, traces: list[TraceFile]) -> dict[str, object]:
    """Where the trace files are, how many cases they hold and the lowest sampling ratio."""
    return {
        "traces": MetadataValue.path(str(folder)),
        "trace_files": len(traces),
        "traced_cases": sum(f.traces for f in traces),
        "trace_sample_ratio_min": readable_number(min(f.sample_ratio for f in traces)),
    }


def build_metrics_assets(domain: DomainConfig) -> list[AssetsDefinition]:
    """The `decision_metrics` asset of one domain, with its anomaly checks."""
    key = stage_key(domain, "decision_metrics")

    @daily_stage_asset(
        domain,
        key,
        deps=[stage_key(domain, "audit_lineage")],
        check_specs=[
            AssetCheckSpec(name, asset=key, description=text) for name, text in CHECKS.items()
        ],
        description=(
            "Decision metrics per day (volumes, rates, overrides, time to decision, queues, SLA, "
            "outcomes) in the audit table `decision_metrics`; anomaly checks against a trailing "
            "baseline; per-case OTLP traces and an HTML operations report under the home."
        ),
        kinds={"duckdb", "plotly"},
    )
    def decision_metrics_asset(
        context: AssetExecutionContext,
        config: MetricsConfig,
        audit_db: AuditDatabase,
        landing: LandingZone,
        feature_store: FeatureStoreResource,
        observability: ObservabilityOutputs,
        data_docs: DataDocs,
        model_registry: ModelRegistryResource,
        review: ReviewWorkspace,
    ) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
        days = partition_days(context)
        run_id = context.run.run_id
        settings = config.settings()
        traces_dir = observability.traces_dir(domain.name)
        with audit_db.connect() as con:
            pending = runs_without_stage_times(con, domain.name, days)
            record_stage_times(con, domain.name, stage_materializations(context, domain, pending))
            inputs = read_metric_inputs(
                con, domain.name, days, settings.thresholds, with_cases=False
            )
            # Aggregated in DuckDB: no frame of the window's cases (13.8 GB at 10M a day).
            evaluation = evaluate_metrics_db(
                con,
                inputs,
                domain,
                settings,
                as_of=datetime.now(UTC),
                outcomes=OutcomeFiles.of(landing.path, domain),  # read by DuckDB, no frame
                feast_dir=feature_store.path,
                warehouse=Path(data_docs.warehouse),
            )
            # The same connection stores and reads back: an open and a close (checkpoint) of
            # the audit file cost more than the statements.
            traces = store_metrics(con, evaluation, domain.name, run_id, settings, traces_dir)
            period = (
                read_period_metrics(con, domain.name, max(days)) if config.write_report else None
            )
        metadata: dict[str, object] = {
            **_evaluation_metadata(evaluation),
            "audit_database": MetadataValue.path(audit_db.database),
            "review_batches": MetadataValue.path(str(review.batches_dir)),
            "data_docs": MetadataValue.path(str(data_docs.path)),
            **{
                name: MetadataValue.path(str(folder))
                for name, folder in model_run_folders(
                    model_registry.path, inputs.model_runs
                ).items()
            },
            **model_version_links(observability, inputs.model_runs),
        }
        if config.write_traces:
            metadata.update(_trace_metadata(traces_dir, traces))
        if config.write_report:
            links = {
                "audit database": audit_db.database,
                "traces (OTLP JSON lines)": str(traces_dir),
                "model runs (MLflow)": describe_model_runs(inputs.model_runs),
            }
            report = write_run_report(
                observability.reports_dir(domain.name),
                domain,
                run_id,
                evaluation,
                links,
                thresholds=settings.thresholds,
                period_metrics=period,
            )
            metadata["report"] = MetadataValue.path(str(report))
            metadata["report_period"] = MetadataValue.path(str(report.with_name(PERIOD_REPORT)))
            served = observability.report_url(domain.name, report)
            if served is not None:
                metadata["report_url"] = MetadataValue.url(served)
        yield Output(evaluation.metrics, metadata=metadata)
        for finding in evaluation.findings:
            yield check_result(finding)

    return [decision_metrics_asset]

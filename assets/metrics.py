"""Observability asset: decision metrics per day, anomaly checks, traces and the HTML report.

`decision_metrics` runs after `audit_lineage` in the daily and review-loop jobs. It reads the
audit database (the columns of the `case_stage_times` view that metrics use) and the day's
feature partitions, and writes: the long `decision_metrics` table, Dagster metadata (Markdown
tables), OTLP trace lines (every case of small days, a consistent sample of large ones; built
and streamed by DuckDB, `hitl_gate/observability/traces.py`) under `<home>/traces/<domain>/`,
and an HTML report under `<home>/reports/<domain>/`. Its anomaly checks are declared on the
asset and evaluated in the same step, from the same frames.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
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

from assets.common import markdown_table, stage_key
from assets.partitions import daily_stage_asset, partition_days
from hitl_gate.core.database import insert_new_rows, query_frame, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from hitl_gate.observability.anomalies import Finding, Thresholds, detect_all
from hitl_gate.observability.metrics import decision_metrics, default_decline_bands
from pipelines.resources import (
    AuditDatabase,
    DataDocs,
    FeatureStoreResource,
    LandingZone,
    ModelRegistryResource,
    ObservabilityOutputs,
    ReviewWorkspace,
)

# Per-case traces kept per day before sampling starts: about 35 MB of OTLP JSON (docs/scaling.md).
TRACE_MAX_CASES_PER_DAY = 10_000
# The `case_stage_times` columns metrics and checks read (run ids and digests stay in DuckDB).
METRIC_CASE_COLUMNS = (
    "partition_date", "case_id", "route", "route_rule_id", "review_queue", "risk_band",
    "policy_version", "pd", "ingested_at", "validated_at", "scored_at", "routed_at",
    "batch_queue", "exported_at", "due_at", "verdict", "reviewer_id", "verdict_file_sha256",
    "verdict_received_at", "executed_action", "decided_by", "executed_at",
)  # fmt: skip

CHECKS = {
    "route_mix_shift": "Share of each route per day vs the trailing baseline (binomial z).",
    "approval_rate_shift": "Final approval rate per day vs the trailing baseline.",
    "override_rate_spike": "Reviewer override rate per day vs the trailing baseline.",
    "score_drift_psi": "PSI of the model probability per day vs the trailing baseline.",
    "feature_drift_psi": "PSI of every model feature per day vs the trailing baseline.",
    "volume_drop": "Cases per day vs the median of the trailing days.",
    "automation_bias": "Reviewers with near-zero time per case or override rate.",
    "sla_breaches": "Review cases answered after, or still open past, their due time.",
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

    def thresholds(self) -> Thresholds:
        return Thresholds(
            baseline_days=self.baseline_days,
            min_baseline_days=self.min_baseline_days,
            psi_warn=self.psi_warn,
            psi_error=self.psi_error,
            bias_min_seconds_per_case=self.bias_min_seconds_per_case,
        )


def record_stage_materializations(
    context: AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    run_ids: list[str],
) -> int:
    """Copy when each stage materialised each partition in `run_ids` from the Dagster event log."""
    rows = []
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
            rows.append(
                {
                    "domain": domain.name,
                    "run_id": run_id,
                    "stage": event.asset_key.path[-1],
                    "partition_date": date.fromisoformat(event.partition),
                    "materialized_at": datetime.fromtimestamp(
                        record.event_log_entry.timestamp, tz=UTC
                    ),
                }
            )
    if not rows:
        return 0
    return insert_new_rows(con, "stage_materializations", pl.DataFrame(rows))


def load_outcomes(landing: LandingZone, domain: DomainConfig) -> pl.DataFrame:
    """Known post-decision outcomes as (case_id, bad)."""
    from assets.models import read_outcomes

    label = domain.model.label
    return read_outcomes(landing.path, domain).select(
        pl.col(domain.case_id).alias("case_id"),
        pl.col(label.column).is_in(label.positive_values).alias("bad"),
    )


def load_features(feast_dir: Path, domain: DomainConfig, days: list[date]) -> pl.DataFrame:
    """The model features of `days` from the Feast offline source files (absent days skipped)."""
    from features.store import partition_path

    names = domain.model.features
    frames = []
    for day in days:
        path = partition_path(domain, feast_dir, day)
        if path.exists():
            frame = pl.read_parquet(path, columns=[c for c in names])
            frames.append(frame.with_columns(pl.lit(day).alias("partition_date")))
    if not frames:
        return pl.DataFrame(schema={"partition_date": pl.Date, **dict.fromkeys(names, pl.Float64)})
    return pl.concat(frames, how="diagonal_relaxed")


def check_result(finding: Finding) -> AssetCheckResult:
    """A Dagster check result that says what was compared and the numbers."""
    return AssetCheckResult(
        check_name=finding.check,
        passed=finding.passed,
        severity=AssetCheckSeverity.ERROR
        if finding.severity == "ERROR"
        else AssetCheckSeverity.WARN,
        description=finding.summary,
        metadata={
            "summary": MetadataValue.md(finding.summary),
            "details": MetadataValue.md(markdown_table(finding.details, max_rows=15)),
            "rows_flagged": 0 if finding.passed else finding.details.height,
        },
    )


def _metadata_tables(metrics: pl.DataFrame) -> dict[str, MetadataValue]:
    """Markdown tables of the headline metrics, summed or worst over the run's days."""

    def table(metric_prefix: str, dimension: str, agg: pl.Expr) -> MetadataValue:
        part = metrics.filter(
            pl.col("metric").str.starts_with(metric_prefix) & (pl.col("dimension") == dimension)
        )
        pivot = part.group_by("key", "metric").agg(agg).sort("key", "metric")
        wide = pivot.pivot(on="metric", index="key", values="value") if pivot.height else pivot
        return MetadataValue.md(markdown_table(wide, max_rows=20))

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


def _mlflow_run_links(
    registry: ModelRegistryResource, model_runs: pl.DataFrame
) -> dict[str, MetadataValue]:
    """A link per model version that decided these days: its MLflow run's artefact folder."""
    from models.mlflow_store import artifact_root

    root = artifact_root(registry.path)
    return {
        f"mlflow_run_{r['model_name']}_v{r['model_version']}": MetadataValue.path(
            str(root / r["model_run_id"] / "artifacts")
        )
        for r in model_runs.iter_rows(named=True)
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
        from hitl_gate.observability.metrics import with_review_facts
        from hitl_gate.observability.report import render_report, write_report
        from hitl_gate.observability.traces import write_traces

        days = partition_days(context)
        t = config.thresholds()
        as_of = datetime.now(UTC)
        window_start = min(days) - timedelta(days=t.baseline_days)
        with audit_db.connect() as con:
            run_ids = query_frame(
                con,
                "SELECT DISTINCT run_id FROM decisions WHERE domain = ? AND partition_date IN "
                "(SELECT unnest(?::DATE[])) AND run_id NOT IN (SELECT run_id FROM "
                "stage_materializations WHERE domain = ?)",
                [domain.name, days, domain.name],
            )["run_id"].to_list()
            record_stage_materializations(context, con, domain, run_ids)
            cases = query_frame(
                con,
                f"SELECT {', '.join(METRIC_CASE_COLUMNS)} FROM case_stage_times "
                "WHERE domain = ? AND partition_date BETWEEN ? AND ? "
                "ORDER BY partition_date, case_id",
                [domain.name, window_start, max(days)],
            )
            qa = query_frame(
                con,
                "SELECT d.partition_date, d.proposed_route, d.qa_probability, v.verdict "
                "FROM decisions d LEFT JOIN verdicts v ON v.domain = d.domain "
                "AND v.case_id = d.case_id WHERE d.domain = ? AND d.qa_sample "
                "AND d.partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, days],
            )
            model_runs = query_frame(
                con,
                "SELECT DISTINCT model_name, model_version, model_run_id FROM decisions "
                "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
                [domain.name, days],
            )
        decline = config.decline_bands or default_decline_bands(list(domain.model.bands))
        in_run = cases.filter(pl.col("partition_date").is_in(days))
        metrics = decision_metrics(
            in_run,
            as_of=as_of,
            decline_bands=decline,
            outcomes=load_outcomes(landing, domain),
            qa=qa,
        )
        window = [
            window_start + timedelta(days=i) for i in range((max(days) - window_start).days + 1)
        ]
        features = load_features(feature_store.path, domain, window)
        findings = detect_all(
            with_review_facts(cases, decline),
            features,
            days=days,
            as_of=as_of,
            feature_columns=domain.model.features,
            t=t,
        )
        stored = metrics.with_columns(
            pl.lit(domain.name).alias("domain"),
            pl.lit(context.run.run_id).alias("run_id"),
            pl.lit(as_of).alias("computed_at"),
        )
        with audit_db.connect() as con:
            replace_partition_slice(con, "decision_metrics", stored, domain.name, days)
            if config.write_traces:
                traces = write_traces(
                    con,
                    domain.name,
                    observability.traces_dir(domain.name),
                    days,
                    config.trace_max_cases_per_day,
                )
        links = {
            "audit database": audit_db.database,
            "traces (OTLP JSON lines)": str(observability.traces_dir(domain.name)),
            "model runs (MLflow)": ", ".join(
                f"{r['model_name']} v{r['model_version']} run {r['model_run_id']}"
                for r in model_runs.iter_rows(named=True)
            ),
        }
        metadata: dict[str, object] = {
            "days": len(days),
            "cases": int(in_run.height),
            "metric_rows": metrics.height,
            "checks_failed": sum(not f.passed for f in findings),
            "checks": MetadataValue.md(
                "\n".join(f"- {f.describe()}" for f in findings) or "_none_"
            ),
            **_metadata_tables(metrics),
            "audit_database": MetadataValue.path(audit_db.database),
            "review_batches": MetadataValue.path(str(review.batches_dir)),
            "data_docs": MetadataValue.path(str(data_docs.path)),
            **_mlflow_run_links(model_registry, model_runs),
        }
        if config.write_traces:
            metadata["traces"] = MetadataValue.path(str(observability.traces_dir(domain.name)))
            metadata["trace_files"] = len(traces)
            metadata["traced_cases"] = sum(f.traces for f in traces)
            metadata["trace_sample_ratio_min"] = min(f.sample_ratio for f in traces)
        if config.write_report:
            document = render_report(
                domain=domain.name, run_id=context.run.run_id, days=days, as_of=as_of,
                metrics=metrics, findings=findings, links=links,
            )  # fmt: skip
            report = write_report(
                observability.reports_dir(domain.name), context.run.run_id, document
            )
            metadata["report"] = MetadataValue.path(str(report))
            metadata["report_url"] = MetadataValue.url(report.as_uri())
        yield Output(metrics, metadata=metadata)
        for finding in findings:
            yield check_result(finding)

    return [decision_metrics_asset]

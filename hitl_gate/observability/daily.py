"""One run's decision metrics: read the days and their baseline, judge them, store the evidence.

The `decision_metrics` asset is three calls into this module around two short DuckDB
connections: `read_metric_inputs` (the run's days plus the trailing baseline window),
`evaluate_metrics_db` (the long metrics table and every anomaly finding, aggregated in DuckDB;
`evaluate_metrics` is its reference on frames) and `store_metrics` (the day's slice of
`decision_metrics` and the OTLP trace files). The HTML report is `write_run_report`. Nothing
here knows about Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame, replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from hitl_gate.observability.anomalies import Finding, Thresholds, detect_all
from hitl_gate.observability.facts import CASE_COLUMNS, case_facts
from hitl_gate.observability.fairness import fairness_findings, fairness_metrics, fairness_table
from hitl_gate.observability.fairness_period import with_protected
from hitl_gate.observability.metrics import (
    decision_metrics,
    default_decline_bands,
    with_review_facts,
)
from hitl_gate.observability.metrics_db import (
    METRICS_MEMORY_LIMIT,
    decision_metrics_db,
    memory_limit,
)
from hitl_gate.observability.outcomes_db import OutcomeFiles
from hitl_gate.observability.report import PERIOD, RUN, render_report, write_report
from hitl_gate.observability.traces import TraceFile, write_traces

# The period view of the operations report: the stored days up to a run's last day.
PERIOD_DAYS = 90
# Per-case traces kept per day before sampling starts: about 35 MB of OTLP JSON (docs/scaling.md).
TRACE_MAX_CASES_PER_DAY = 10_000
# The `case_stage_times` columns metrics and checks read (run ids and digests stay in DuckDB):
# the frames' columns are the DuckDB facts' (`facts.CASE_COLUMNS`).
METRIC_CASE_COLUMNS = CASE_COLUMNS


@dataclass(frozen=True)
class MetricSettings:
    """How one run's metrics are judged and which evidence it writes."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    # Risk bands whose proposed action is decline; empty = upper half of the model's bands.
    decline_bands: tuple[str, ...] = ()
    write_traces: bool = True
    # Trace every case of a day up to this many, else a consistent sample (None = all).
    trace_max_cases_per_day: int | None = TRACE_MAX_CASES_PER_DAY
    # DuckDB's memory limit on the step's connection while it reads and aggregates the cases
    # (`metrics_db.METRICS_MEMORY_LIMIT`); beyond it the facts table and sorts spill to disk.
    memory_limit: str = METRICS_MEMORY_LIMIT

    def decline_bands_for(self, domain: DomainConfig) -> list[str]:
        """The declared decline bands, or by default the upper half of the domain's bands."""
        return list(self.decline_bands) or default_decline_bands(list(domain.model.bands))


@dataclass(frozen=True)
class MetricInputs:
    """What the audit database holds for a run's days and their trailing baseline."""

    days: list[date]
    window_start: date
    cases: pl.DataFrame  # `METRIC_CASE_COLUMNS` of the window, run days included
    qa: pl.DataFrame  # QA-sampled automatic cases of the run's days and their verdicts
    model_runs: pl.DataFrame  # model name, version and MLflow run that decided the days

    @property
    def window(self) -> list[date]:
        """Every day from the baseline's first to the run's last."""
        last = max(self.days)
        return [
            self.window_start + timedelta(days=i)
            for i in range((last - self.window_start).days + 1)
        ]

    @property
    def run_cases(self) -> pl.DataFrame:
        """The cases of the run's days only."""
        return self.cases.filter(pl.col("partition_date").is_in(self.days))


@dataclass(frozen=True)
class MetricsEvaluation:
    """The long metrics table of the run's days and every anomaly finding about them."""

    days: list[date]
    as_of: datetime
    cases: int
    metrics: pl.DataFrame
    findings: list[Finding]
    # `case_stage_times` rows per run day, from the facts (`evaluate_metrics_db`): the traces
    # sample by them without reading the view again. None: the traces count them.
    day_rows: dict[date, int] | None = None

    @property
    def checks_failed(self) -> int:
        return sum(not f.passed for f in self.findings)

    @property
    def checks_not_judged(self) -> int:
        return sum(f.passed and not f.judged for f in self.findings)


@dataclass(frozen=True)
class StageMaterialization:
    """When one stage of a run materialised one partition day (from the orchestrator's log)."""

    run_id: str
    stage: str
    partition_date: date
    materialized_at: datetime


def record_stage_times(
    con: duckdb.DuckDBPyConnection, domain: str, events: Sequence[StageMaterialization]
) -> int:
    """Add the events to `stage_materializations` (rows already there are kept); rows added."""
    if not events:
        return 0
    rows = pl.DataFrame(
        {
            "domain": [domain] * len(events),
            "run_id": [e.run_id for e in events],
            "stage": [e.stage for e in events],
            "partition_date": [e.partition_date for e in events],
            "materialized_at": [e.materialized_at for e in events],
        }
    )
    return insert_new_rows(con, "stage_materializations", rows)


def runs_without_stage_times(
    con: duckdb.DuckDBPyConnection, domain: str, days: Sequence[date]
) -> list[str]:
    """Runs that decided cases of `days` whose stage materialisation times are not copied yet."""
    return query_frame(
        con,
        "SELECT DISTINCT run_id FROM decisions WHERE domain = ? AND partition_date IN "
        "(SELECT unnest(?::DATE[])) AND run_id NOT IN (SELECT run_id FROM "
        "stage_materializations WHERE domain = ?) ORDER BY run_id",
        [domain, list(days), domain],
    )["run_id"].to_list()


def baseline_start(days: Sequence[date], t: Thresholds) -> date:
    """The first day of the trailing window the run's earliest day is compared with."""
    return min(days) - timedelta(days=t.baseline_days)


def read_metric_inputs(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    days: Sequence[date],
    t: Thresholds,
    *,
    with_cases: bool = True,
) -> MetricInputs:
    """The cases of the run's days and baseline window, the QA sample and the deciding models.

    `with_cases=False` leaves `cases` empty: `evaluate_metrics_db` aggregates them in DuckDB.
    """
    days = list(days)
    start = baseline_start(days, t)
    cases = query_frame(
        con,
        f"SELECT {', '.join(METRIC_CASE_COLUMNS)} FROM case_stage_times "
        "WHERE domain = ? AND partition_date BETWEEN ? AND ? "
        + ("" if with_cases else "AND false ")
        + "ORDER BY partition_date, case_id",
        [domain, start, max(days)],
    )
    qa = query_frame(
        con,
        "SELECT d.partition_date, d.proposed_route, d.qa_probability, v.verdict "
        "FROM decisions d LEFT JOIN verdicts v ON v.domain = d.domain "
        "AND v.case_id = d.case_id WHERE d.domain = ? AND d.qa_sample "
        "AND d.partition_date IN (SELECT unnest(?::DATE[]))",
        [domain, days],
    )
    model_runs = query_frame(
        con,
        "SELECT DISTINCT model_name, model_version, model_run_id FROM decisions "
        "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[]))",
        [domain, days],
    )
    return MetricInputs(days, start, cases, qa, model_runs)


def read_model_features(
    feast_dir: Path, domain: DomainConfig, days: Sequence[date]
) -> pl.DataFrame:
    """The model features of `days` from the Feast offline source files (absent days skipped)."""
    from features.store import partition_path

    names = list(domain.model.features)
    frames = []
    for day in days:
        path = partition_path(domain, feast_dir, day)
        if path.exists():
            frame = pl.read_parquet(path, columns=names)
            frames.append(frame.with_columns(pl.lit(day).alias("partition_date")))
    if not frames:
        return pl.DataFrame(schema={"partition_date": pl.Date, **dict.fromkeys(names, pl.Float64)})
    return pl.concat(frames, how="diagonal_relaxed")


def evaluate_metrics(
    inputs: MetricInputs,
    domain: DomainConfig,
    settings: MetricSettings,
    *,
    as_of: datetime,
    outcomes: pl.DataFrame,
    features: pl.DataFrame,
    protected: pl.DataFrame | None = None,
) -> MetricsEvaluation:
    """The run days' metrics and the findings of every detector against the baseline.

    The straightforward computation on frames, one row per case: the reference the tests hold
    `evaluate_metrics_db` (what the asset runs, aggregated in DuckDB) to, value for value.

    `outcomes` is (case_id, bad); `features` is partition_date plus the model's features over
    the whole window (`MetricInputs.window`); `protected` is case_id plus the domain's
    protected attributes (`fairness.read_protected_values`), judged over the run's days.
    """
    decline = settings.decline_bands_for(domain)
    in_run = inputs.run_cases
    metrics = decision_metrics(
        in_run, as_of=as_of, decline_bands=decline, outcomes=outcomes, qa=inputs.qa
    )
    findings = detect_all(
        with_review_facts(inputs.cases, decline),
        features,
        days=inputs.days,
        as_of=as_of,
        feature_columns=domain.model.features,
        t=settings.thresholds,
    )
    attributed = in_run if protected is None else with_protected(in_run, protected)
    attributes = domain.protected_attributes
    fairness = fairness_table(attributed, attributes, decline, domain.fairness.confidence)
    fair_rows = fairness_metrics(attributed, attributes, decline, domain.fairness.confidence)
    if fair_rows.height:
        metrics = pl.concat([metrics, fair_rows]).sort(
            "partition_date", "metric", "dimension", "key"
        )
    findings = [*findings, *fairness_findings(fairness, domain.fairness).all()]
    return MetricsEvaluation(inputs.days, as_of, in_run.height, metrics, findings)


def feature_files(feast_dir: Path, domain: DomainConfig, days: Sequence[date]) -> dict[date, Path]:
    """The Feast offline file of each of `days` that has one (`read_model_features`'s files)."""
    from features.store import partition_path

    paths = {day: partition_path(domain, feast_dir, day) for day in days}
    return {day: path for day, path in paths.items() if path.exists()}


def evaluate_metrics_db(
    con: duckdb.DuckDBPyConnection,
    inputs: MetricInputs,
    domain: DomainConfig,
    settings: MetricSettings,
    *,
    as_of: datetime,
    outcomes: pl.DataFrame | OutcomeFiles,
    feast_dir: Path,
    warehouse: Path,
) -> MetricsEvaluation:
    """`evaluate_metrics` with the cases aggregated in DuckDB on `con` (`metrics_db`,
    `checks_db`, `fairness_db`): no row per case is held in Python, so memory does not grow
    with the day. `inputs` needs only the QA sample and the days
    (`read_metric_inputs(..., with_cases=False)`); the protected values are read from the
    stored validated cases under `warehouse`, as `read_protected_values` does. The window's
    cases are read from `case_stage_times` once for metrics, checks and fairness
    (`facts.case_facts`), under the metrics' memory limit. `outcomes` is (case_id, bad), or
    the outcome files for DuckDB to read (`outcomes_db.OutcomeFiles`: no frame of them).
    """
    from hitl_gate.observability.checks_db import detect_all_db
    from hitl_gate.observability.fairness_db import fairness_db

    decline = settings.decline_bands_for(domain)
    days = inputs.days
    with (
        memory_limit(con, settings.memory_limit),
        case_facts(con, domain.name, days, decline, window=inputs.window) as facts,
    ):
        metrics = decision_metrics_db(
            con, domain.name, days, as_of=as_of, decline_bands=decline, outcomes=outcomes,
            qa=inputs.qa, limit=None, facts=facts,
        )  # fmt: skip
        findings = detect_all_db(
            con, domain.name, inputs.window, days=days, as_of=as_of, decline_bands=decline,
            feature_files=feature_files(feast_dir, domain, inputs.window),
            feature_columns=domain.model.features, t=settings.thresholds,
            limit=settings.memory_limit, facts=facts,
        )  # fmt: skip
        fairness, fair_rows = fairness_db(con, domain, days, decline, warehouse, facts)
        cases = int(
            con.execute(
                "SELECT count(*) FROM decisions WHERE domain = ? AND partition_date IN "
                "(SELECT unnest(?::DATE[]))",
                [domain.name, days],
            ).fetchall()[0][0]
        )
    if fair_rows.height:
        metrics = pl.concat([metrics, fair_rows]).sort(
            "partition_date", "metric", "dimension", "key"
        )
    findings = [*findings, *fairness_findings(fairness, domain.fairness).all()]
    return MetricsEvaluation(days, as_of, cases, metrics, findings, facts.day_rows)


def stored_metrics(evaluation: MetricsEvaluation, domain: str, run_id: str) -> pl.DataFrame:
    """The metrics as rows of the audit table `decision_metrics` (who computed them, when)."""
    return evaluation.metrics.with_columns(
        pl.lit(domain).alias("domain"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(evaluation.as_of).alias("computed_at"),
    )


def store_metrics(
    con: duckdb.DuckDBPyConnection,
    evaluation: MetricsEvaluation,
    domain: str,
    run_id: str,
    settings: MetricSettings,
    traces_dir: Path,
) -> list[TraceFile]:
    """Replace the days' slice of `decision_metrics`; rewrite their trace files if asked.

    The traces' query joins `case_stage_times` (eight tables, all of history on the right) and
    runs under the metrics' DuckDB memory limit like the evaluation: under the default (80% of
    the machine) its hash tables grew with the day (+190 MB per million cases at 1-2M).
    """
    replace_partition_slice(
        con, "decision_metrics", stored_metrics(evaluation, domain, run_id), domain, evaluation.days
    )
    if not settings.write_traces:
        return []
    with memory_limit(con, settings.memory_limit):
        return write_traces(
            con, domain, traces_dir, evaluation.days, settings.trace_max_cases_per_day,
            evaluation.day_rows,
        )  # fmt: skip


def describe_model_runs(model_runs: pl.DataFrame) -> str:
    """The models that decided the days, one readable phrase each."""
    return ", ".join(
        f"{r['model_name']} v{r['model_version']} run {r['model_run_id']}"
        for r in model_runs.iter_rows(named=True)
    )


def model_run_folders(mlflow_dir: Path, model_runs: pl.DataFrame) -> dict[str, Path]:
    """The MLflow artefact folder of each model version that decided the days, by a short key."""
    from models.mlflow_store import artifact_root

    root = artifact_root(mlflow_dir)
    return {
        f"mlflow_run_{r['model_name']}_v{r['model_version']}": root
        / r["model_run_id"]
        / "artifacts"
        for r in model_runs.iter_rows(named=True)
    }


def read_period_metrics(
    con: duckdb.DuckDBPyConnection, domain: str, last_day: date, days: int = PERIOD_DAYS
) -> pl.DataFrame:
    """The stored `decision_metrics` of `domain` over the `days` days ending on `last_day`."""
    return query_frame(
        con,
        "SELECT partition_date, metric, dimension, key, value FROM decision_metrics "
        "WHERE domain = ? AND partition_date BETWEEN ? AND ? "
        "ORDER BY partition_date, metric, dimension, key",
        [domain, last_day - timedelta(days=days - 1), last_day],
    )


def write_run_report(
    folder: Path,
    domain: DomainConfig,
    run_id: str,
    evaluation: MetricsEvaluation,
    links: dict[str, str],
    *,
    thresholds: Thresholds,
    period_metrics: pl.DataFrame | None = None,
) -> Path:
    """Render the run's HTML report into `folder` (and `latest.html`), and the period view
    (`period.html`) from `period_metrics` (`read_period_metrics`) when given."""

    def render(days: list[date], metrics: pl.DataFrame, view: str) -> str:
        return render_report(
            domain=domain.name,
            run_id=run_id,
            days=days,
            as_of=evaluation.as_of,
            metrics=metrics,
            findings=evaluation.findings,
            links=links,
            view=view,
            thresholds=thresholds,
            fairness=domain.fairness,
        )

    document = render(evaluation.days, evaluation.metrics, RUN)
    period = None
    if period_metrics is not None and period_metrics.height:
        period_days = sorted(set(period_metrics["partition_date"].to_list()))
        period = render(period_days, period_metrics, PERIOD)
    return write_report(folder, run_id, document, period)

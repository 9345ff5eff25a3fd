"""Per-case stage spans as OpenTelemetry (OTLP/JSON) trace records, one JSON line per case.

Each line is an OTLP `ExportTraceServiceRequest` in its JSON encoding, the format the
OpenTelemetry Collector's file exporter writes and its `otlpjsonfile` receiver reads, so the
files can be replayed into Jaeger, Tempo or any OTLP backend later; no collector is needed now.
A case is one trace (trace id = SHA-256 of domain/case id); the root span runs from ingestion to
the last stage reached and every stage is a child span from the previous stage to that one.

The lines are built by DuckDB from the `case_stage_times` rows (one SQL statement, streamed out
in Arrow batches), never as per-case Python objects: at a million cases a day the Python
encoder took two minutes and gigabytes. Large days are *sampled* the way OpenTelemetry's
`TraceIdRatioBased` sampler does it: a case is traced when its trace id, read as a fraction
of the id space, falls below `max_traces / cases of the day`. The decision depends on the trace
id only, so re-running a day traces the same cases; the ratio is stored on every trace
(`hitl.trace_sample_ratio`). Every case's stage timestamps stay queryable in DuckDB
(`case_stage_times`, `case_stage_events`), sampled or not.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from hitl_gate.core.slices import consecutive_groups

SERVICE_NAME = "hitl-gate"
SCOPE_NAME = "hitl_gate.observability"
SPAN_KIND_INTERNAL = 1
# Stage, the `case_stage_times` column of when it was reached, the run that recorded it.
STAGE_COLUMNS = (
    ("ingested", "ingested_at", "validation_run_id"),
    ("validated", "validated_at", "validation_run_id"),
    ("scored", "scored_at", "decision_run_id"),
    ("routed", "routed_at", "decision_run_id"),
    ("exported", "exported_at", "export_run_id"),
    ("verdict_received", "verdict_received_at", "verdict_run_id"),
    ("executed", "executed_at", "execution_run_id"),
)
# Arrow batch size when streaming lines out of DuckDB: bounds the writer's memory.
BATCH_ROWS = 50_000
# Trace ids are sampled on their first 13 hex digits (52 bits: exact in a DOUBLE).
_SAMPLE_HEX = 13


def _attr(key: str, value: str) -> str:
    return f"{{'key': '{key}', 'value': {{'stringValue': CAST({value} AS VARCHAR)}}}}"


def _stage_list() -> str:
    items = ", ".join(
        f"{{'name': '{stage}', 'at': {at}, 'run': {run}}}" for stage, at, run in STAGE_COLUMNS
    )
    return f"list_filter([{items}], lambda s: s.at IS NOT NULL)"


def _otlp_select() -> str:
    """The query turning `case_stage_times` rows into one OTLP line each.

    Built once from this module's constants. The domain is bound as parameter $1; the days,
    each with its sampling threshold and that ratio as text, are the rows of the registered
    table `trace_days` (`day`, `threshold`, `ratio_text`), so one statement serves a run's
    days, ordered by day and case id.
    """
    common = ", ".join(
        [
            _attr("hitl.domain", "domain"),
            _attr("hitl.case_id", "case_id"),
            _attr("hitl.partition_date", "partition_date"),
        ]
    )
    nanos = "CAST(epoch_us({}) * 1000 AS VARCHAR)"
    return f"""
WITH picked AS (
    SELECT *, substr(sha256(domain || '/' || case_id), 1, 32) AS trace_id,
           substr(sha256(domain || '/' || case_id || '/case'), 1, 16) AS root_id,
           {_stage_list()} AS reached
    FROM case_stage_times JOIN trace_days t ON partition_date = t.day
    WHERE domain = $1 AND partition_date IN (SELECT day FROM trace_days)
      AND (CAST(('0x' || substr(sha256(domain || '/' || case_id), 1, {_SAMPLE_HEX}))
           AS UBIGINT) / {16.0**_SAMPLE_HEX}) < t.threshold
)
SELECT to_json({{'resourceSpans': [{{
    'resource': {{'attributes': [
        {_attr("service.name", f"'{SERVICE_NAME}'")}, {_attr("hitl.domain", "domain")},
        {_attr("hitl.trace_sample_ratio", "ratio_text")}]}},
    'scopeSpans': [{{'scope': {{'name': '{SCOPE_NAME}'}}, 'spans': list_concat(
        [{{'traceId': trace_id, 'spanId': root_id, 'parentSpanId': '', 'name': 'case',
           'kind': {SPAN_KIND_INTERNAL},
           'startTimeUnixNano': {nanos.format("reached[1].at")},
           'endTimeUnixNano': {nanos.format("greatest(reached[1].at, reached[-1].at)")},
           'attributes': list_filter([{common}, {_attr("hitl.route", "route")},
               {_attr("hitl.final_action", "executed_action")}],
               lambda a: a.value.stringValue IS NOT NULL)}}],
        list_transform(reached, lambda s, i: {{
           'traceId': trace_id,
           'spanId': substr(sha256(domain || '/' || case_id || '/' || s.name), 1, 16),
           'parentSpanId': root_id, 'name': s.name, 'kind': {SPAN_KIND_INTERNAL},
           'startTimeUnixNano': {nanos.format("least(reached[greatest(i - 1, 1)].at, s.at)")},
           'endTimeUnixNano': {nanos.format("s.at")},
           'attributes': list_filter([{common}, {_attr("hitl.stage", "s.name")},
               {_attr("hitl.run_id", "s.run")}], lambda a: a.value.stringValue IS NOT NULL)}})
    )}}]
}}]}}) AS line, partition_date
FROM picked
WHERE len(reached) > 0
ORDER BY partition_date, case_id
"""


OTLP_SELECT = _otlp_select()


@dataclass(frozen=True)
class TraceFile:
    """One day's trace file: how many cases it holds and the sampling ratio applied."""

    path: Path
    traces: int
    sample_ratio: float


def sample_ratio(cases: int, max_traces: int | None) -> float:
    """The fraction of a day's cases to trace: all of them up to `max_traces` (None = all)."""
    if max_traces is None or cases <= max_traces:
        return 1.0
    return max_traces / cases


def write_day_traces(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    day: date,
    target: Path,
    max_traces: int | None,
) -> TraceFile:
    """Rewrite `target` with the OTLP lines of `day`'s (sampled) cases; atomic rename."""
    return _write_days(con, domain, {day: target}, max_traces)[0]


def write_traces(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    folder: Path,
    days: list[date],
    max_traces_per_day: int | None,
    counts: dict[date, int] | None = None,
) -> list[TraceFile]:
    """Rewrite `<folder>/<day>.jsonl` for each day (idempotent: same cases, same lines).

    `counts`: the days' `case_stage_times` rows when the caller has them (`facts.CaseFacts`'s
    `day_rows`, a day without cases absent); None counts them from the view.
    """
    folder.mkdir(parents=True, exist_ok=True)
    targets = {day: folder / f"{day.isoformat()}.jsonl" for day in days}
    return _write_days(con, domain, targets, max_traces_per_day, counts)


def _day_groups(
    days: list[date], counts: dict[date, int], ratios: dict[date, float]
) -> list[list[date]]:
    """The days cut into runs of about `BATCH_ROWS` expected lines, one query each: the query
    sorts its lines, so a long run of large days (a backfill) stays bounded like one day."""
    return consecutive_groups(days, lambda day: counts.get(day, 0) * ratios[day], BATCH_ROWS)


def _write_days(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    targets: dict[date, Path],
    max_traces: int | None,
    counts: dict[date, int] | None = None,
) -> list[TraceFile]:
    """Each day's lines into its target, from one count (or the given `counts`) and one
    streamed query for all days.

    A query per day re-joined the whole `case_stage_times` view each time (two per day, 180
    per quarter run); the lines of each day are the same either way (same filter, same
    order). Days are queried together up to about `BATCH_ROWS` expected lines (`_day_groups`).
    Every target is rewritten, a day without cases as an empty file.
    """
    import pyarrow as pa

    from hitl_gate.core.database import registered

    days = list(targets)
    if counts is None:
        counts = dict(
            con.execute(
                "SELECT partition_date, count(*) FROM case_stage_times "
                "WHERE domain = ? AND partition_date IN (SELECT unnest(?::DATE[])) GROUP BY ALL",
                [domain, days],
            ).fetchall()
        )
    ratios = {day: sample_ratio(int(counts.get(day, 0)), max_traces) for day in days}
    written = dict.fromkeys(days, 0)
    for group in _day_groups(days, counts, ratios):
        trace_days = pa.table(
            {
                "day": pa.array(group, pa.date32()),
                "threshold": pa.array([ratios[d] for d in group], pa.float64()),
                "ratio_text": pa.array([f"{ratios[d]:.6g}" for d in group], pa.string()),
            }
        )
        # Only the group's files are open at a time: a backfill of years stays a few handles.
        outputs = {
            day: targets[day].with_suffix(".jsonl.tmp").open("w", encoding="utf-8") for day in group
        }
        try:
            with registered(con, "trace_days", trace_days):
                reader = con.sql(OTLP_SELECT, params=[domain])
                for batch in reader.to_arrow_reader(BATCH_ROWS):
                    lines = batch.column(0).to_pylist()
                    batch_days = batch.column(1).to_pylist()
                    for day, rows in itertools.groupby(
                        zip(batch_days, lines, strict=True), key=lambda x: x[0]
                    ):
                        chunk = [line for _, line in rows]
                        outputs[day].write("\n".join(chunk) + "\n")
                        written[day] += len(chunk)
        finally:
            for out in outputs.values():
                out.close()
    for target in targets.values():
        os.replace(target.with_suffix(".jsonl.tmp"), target)
    return [TraceFile(path=targets[d], traces=written[d], sample_ratio=ratios[d]) for d in days]

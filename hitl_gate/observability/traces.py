"""Per-case stage spans as OpenTelemetry (OTLP/JSON) trace records, one JSON line per case.

Each line is an OTLP `ExportTraceServiceRequest` in its JSON encoding, the format the
OpenTelemetry Collector's file exporter writes and its `otlpjsonfile` receiver reads, so the
files can be replayed into Jaeger, Tempo or any OTLP backend later; no collector is needed now.
A case is one trace (trace id = SHA-256 of domain/case id); the root span runs from ingestion to
the last stage reached and every stage is a child span from the previous stage to that one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hitl_gate.observability.metrics import STAGES

SERVICE_NAME = "hitl-gate"
SCOPE_NAME = "hitl_gate.observability"
SPAN_KIND_INTERNAL = 1
STAGE_RUN_COLUMN = {
    "ingested": "validation_run_id",
    "validated": "validation_run_id",
    "scored": "decision_run_id",
    "routed": "decision_run_id",
    "exported": "export_run_id",
    "verdict_received": "verdict_run_id",
    "executed": "execution_run_id",
}


def _id(text: str, hex_chars: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:hex_chars]


def _nanos(at: datetime) -> str:
    """OTLP/JSON encodes 64-bit integers as strings."""
    return str(int(at.timestamp() * 1_000_000) * 1000)


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": k, "value": {"stringValue": str(v)}} for k, v in values.items() if v is not None
    ]


def case_spans(domain: str, case: dict[str, Any]) -> list[dict[str, Any]]:
    """The root span and one span per stage reached, for one `case_stage_times` row."""
    reached = [(s, case.get(f"{s}_at")) for s in STAGES if case.get(f"{s}_at") is not None]
    if not reached:
        return []
    trace_id = _id(f"{domain}/{case['case_id']}", 32)
    root_id = _id(f"{domain}/{case['case_id']}/case", 16)
    common = {
        "hitl.domain": domain,
        "hitl.case_id": case["case_id"],
        "hitl.partition_date": case["partition_date"],
    }
    first, last = reached[0][1], reached[-1][1]
    spans = [
        {
            "traceId": trace_id, "spanId": root_id, "name": "case", "kind": SPAN_KIND_INTERNAL,
            "startTimeUnixNano": _nanos(first), "endTimeUnixNano": _nanos(max(first, last)),
            "attributes": _attrs({**common, "hitl.route": case.get("route"),
                                  "hitl.final_action": case.get("executed_action")}),
        }
    ]  # fmt: skip
    previous = first
    for stage, at in reached:
        spans.append(
            {
                "traceId": trace_id, "spanId": _id(f"{domain}/{case['case_id']}/{stage}", 16),
                "parentSpanId": root_id, "name": stage, "kind": SPAN_KIND_INTERNAL,
                "startTimeUnixNano": _nanos(min(previous, at)), "endTimeUnixNano": _nanos(at),
                "attributes": _attrs({**common, "hitl.stage": stage,
                                      "hitl.run_id": case.get(STAGE_RUN_COLUMN[stage])}),
            }
        )  # fmt: skip
        previous = at
    return spans


def otlp_lines(domain: str, cases: pl.DataFrame) -> Iterator[str]:
    """One OTLP/JSON `ExportTraceServiceRequest` per case, as JSON lines."""
    resource = {"attributes": _attrs({"service.name": SERVICE_NAME, "hitl.domain": domain})}
    for case in cases.iter_rows(named=True):
        spans = case_spans(domain, case)
        if spans:
            request = {
                "resourceSpans": [
                    {"resource": resource,
                     "scopeSpans": [{"scope": {"name": SCOPE_NAME}, "spans": spans}]}
                ]
            }  # fmt: skip
            yield json.dumps(request, separators=(",", ":"), default=str)


def write_traces(domain: str, cases: pl.DataFrame, folder: Path, days: list[date]) -> list[Path]:
    """Rewrite `<folder>/<day>.jsonl` for each day (atomic rename; idempotent)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for day in days:
        target = folder / f"{day.isoformat()}.jsonl"
        tmp = target.with_suffix(".jsonl.tmp")
        todays = cases.filter(pl.col("partition_date") == day)
        with tmp.open("w", encoding="utf-8") as out:
            for line in otlp_lines(domain, todays):
                out.write(line + "\n")
        os.replace(tmp, target)
        written.append(target)
    return written

"""Which lineage rows become audit events, and their canonical JSON form.

Each `EventSource` names a lineage table, the columns that identify an entity, and the columns
that change on an identical re-run (run id, wall-clock times). An event's `content_digest`
covers everything else, so re-running a day with the same inputs logs nothing new, while a
genuinely different outcome (a new policy version re-deciding a case) is logged as a new event
for the same entity, keeping the history.

Canonical text forms (STACK_NOTES, hash canonicalisation): every value is rendered by DuckDB in
one place: timestamps as UTC ISO-8601 with microseconds and `Z`, doubles as DuckDB's shortest
round-trip text in a JSON string, dates as `YYYY-MM-DD`, lists as JSON arrays, nulls as `null`,
keys in table column order. Nothing is formatted by Python, so every code path hashes the same
bytes. Identifiers come from the database's own catalogue; values are never put into SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from hitl_gate.audit.chain import Event

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class EventSource:
    """A lineage table whose rows are logged as events of one type."""

    event_type: str
    table: str
    key: tuple[str, ...]
    volatile: tuple[str, ...] = ()


EVENT_SOURCES: tuple[EventSource, ...] = (
    EventSource("policy_version_used", "policy_versions", ("policy_digest",), ("first_used_at",)),
    EventSource(
        "model_version_used", "model_versions", ("model_name", "model_version"), ("first_used_at",)
    ),
    EventSource(
        "input_file_recorded", "input_files", ("domain", "partition_date", "file_sha256"),
        ("run_id", "recorded_at"),
    ),
    EventSource(
        "row_quarantined", "quarantine",
        ("domain", "file_sha256", "row_number", "column_name", "check_name"), ("run_id",),
    ),
    EventSource("decision", "decisions", ("domain", "case_id"), ("run_id", "decided_at")),
    EventSource("batch_exported", "review_batches", ("batch_id",), ("run_id",)),
    EventSource("case_sent_for_review", "review_batch_cases", ("domain", "case_id")),
    EventSource("verdict_file_received", "verdict_files", ("file_sha256",)),
    EventSource("verdict", "verdicts", ("domain", "case_id")),
    EventSource(
        "verdict_rejected", "verdict_rejections",
        ("file_sha256", "row_number", "case_id", "column_name", "message"),
    ),
    EventSource("execution", "executions", ("domain", "case_id")),
    EventSource("adverse_action", "adverse_actions", ("domain", "case_id")),
    EventSource(
        "outcome_recorded", "outcomes", ("domain", "case_id", "source_sha256"),
        ("run_id", "recorded_at", "linked"),
    ),
    EventSource(
        "partition_accounted", "partition_accounting", ("domain", "partition_date"),
        ("run_id", "recorded_at"),
    ),
)  # fmt: skip


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def canonical_value(name: str, data_type: str) -> str:
    """SQL rendering one column in its fixed text form (see the module docstring)."""
    col = _quote(name)
    kind = data_type.upper()
    if kind.startswith("TIMESTAMP"):
        utc = f"timezone('UTC', {col})" if "TIME ZONE" in kind else col
        return f"strftime({utc}, '{TIMESTAMP_FORMAT}')"
    if kind in ("DOUBLE", "FLOAT", "REAL") or kind.startswith("DECIMAL"):
        return f"{col}::VARCHAR"
    if kind == "DATE":
        return f"{col}::VARCHAR"
    return col


def _struct(columns: Sequence[tuple[str, str]]) -> str:
    parts = [f"{_quote(n)} := {canonical_value(n, t)}" for n, t in columns]
    return "struct_pack(" + ", ".join(parts) + ")"


def source_query(con: duckdb.DuckDBPyConnection, source: EventSource) -> str | None:
    """SELECT producing (event_type, entity_key, content_digest, payload_json) for every row.

    None when the table does not exist (a domain or deployment without that stage).
    """
    columns = _columns(con, source.table)
    if not columns:
        return None
    stable = [c for c in columns if c[0] not in source.volatile]
    key = "concat_ws('/', " + ", ".join(f"coalesce({_quote(k)}::VARCHAR, '')" for k in source.key)
    return (
        f"SELECT '{source.event_type}' AS event_type, {key}) AS entity_key, "
        f"sha256(to_json({_struct(stable)})::VARCHAR) AS content_digest, "
        f"to_json({_struct(columns)})::VARCHAR AS payload_json "
        f"FROM {_quote(source.table)}"
    )


def new_events(con: duckdb.DuckDBPyConnection, sources: Sequence[EventSource]) -> list[Event]:
    """Rows of `sources` whose (event, entity, content) is not in the log yet, in a fixed order.

    Order: source order, then entity key, then digest, so the same database state always
    yields the same entries.
    """
    events: list[Event] = []
    for source in sources:
        query = source_query(con, source)
        if query is None:
            continue
        rows = con.execute(
            f"SELECT s.* FROM ({query}) s ANTI JOIN audit_log_index i "
            "ON i.event_type = s.event_type AND i.entity_key = s.entity_key "
            "AND i.content_digest = s.content_digest "
            "ORDER BY s.entity_key, s.content_digest"
        ).fetchall()
        seen: set[tuple[str, str]] = set()
        for event_type, entity_key, digest, payload in rows:
            if (entity_key, digest) in seen:  # identical duplicate rows log once
                continue
            seen.add((entity_key, digest))
            events.append(Event(event_type, entity_key, digest, payload))
    return events

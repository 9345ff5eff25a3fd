"""Which lineage rows become audit events, their canonical JSON form and the logged envelope.

Each `EventSource` names a lineage table, the columns that identify an entity, and the columns
that change on an identical re-run (run id, wall-clock times). An event's `content_digest` is
the SHA-256 of the canonical JSON of everything else, so re-running a day with the same inputs
logs nothing new, while a genuinely different outcome (a new policy version re-deciding a case)
is logged as a new event for the same entity, keeping the history.

The log holds the digest, not the row: an entry's envelope is `{"at","digest","key","run_id",
"type"}` (`envelope_sql`). The row itself stays in its lineage table, and `hitl audit verify`
recomputes every row's digest from there and looks it up in the log (`unlogged_rows`). This
keeps personal data out of the append-only chain (retention can remove it from the lineage
and files while the chain stays verifiable) and makes each entry about 250 bytes instead of
the row's 1 KB or more, which is what sealing and verifying spend their time on.

Canonical text forms (docs/scaling.md, hash canonicalisation): every value is rendered by DuckDB in
one place: timestamps as UTC ISO-8601 with microseconds and `Z`, doubles as DuckDB's shortest
round-trip text in a JSON string, dates as `YYYY-MM-DD`, lists as JSON arrays, nulls as `null`,
keys in table column order. Nothing is formatted by Python, so every code path hashes the same
bytes. Identifiers come from the database's own catalogue; values are never put into SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from hitl_gate.audit.chain import SHA256_FUNCTION, sha256_function

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class EventSource:
    """A lineage table whose rows are logged as events of one type."""

    event_type: str
    table: str
    key: tuple[str, ...]
    volatile: tuple[str, ...] = ()
    append_only: bool = False  # a row, once written, is never replaced or deleted


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
    EventSource("verdict_file_received", "verdict_files", ("file_sha256",), append_only=True),
    EventSource("verdict", "verdicts", ("domain", "case_id"), append_only=True),
    EventSource(
        "verdict_rejected", "verdict_rejections",
        ("file_sha256", "row_number", "case_id", "column_name", "message"),
    ),
    EventSource("execution", "executions", ("domain", "case_id"), append_only=True),
    EventSource("conflict_resolved", "conflict_resolutions", ("escalation_id",), append_only=True),
    EventSource("reversal_requested", "reversal_requests", ("domain", "case_id"), append_only=True),
    EventSource("adverse_action", "adverse_actions", ("domain", "case_id"), append_only=True),
    EventSource(
        "outcome_recorded", "outcomes", ("domain", "case_id", "source_sha256"),
        ("run_id", "recorded_at", "linked"),
    ),
    EventSource(
        "partition_accounted", "partition_accounting", ("domain", "partition_date"),
        ("run_id", "recorded_at"),
    ),
    EventSource(
        "retention_applied", "retention_actions", ("domain", "kind", "target"),
        ("run_id", "applied_at"), append_only=True,
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


@dataclass(frozen=True)
class SourceSql:
    """SQL expressions over one source table's rows; identifiers quoted, no values inlined."""

    table: str  # quoted table name
    fingerprint: str  # cheap 64-bit hash of the stable columns (a prefilter, not a proof)
    entity_key: str
    stable_json: str  # canonical JSON of the stable columns
    content_digest: str  # SHA-256 hex of `stable_json`
    payload_json: str  # canonical JSON of the whole row (volatile columns included)


def source_sql(
    con: duckdb.DuckDBPyConnection, source: EventSource, sha256: str = SHA256_FUNCTION
) -> SourceSql | None:
    """The expressions of `source`, or None when its table does not exist (stage not deployed).

    The fingerprint is DuckDB's `hash()` over the same stable columns the digest covers, plus
    a null flag for list columns (`hash` gives NULL and an empty list the same value). It costs
    a small fraction of rendering and hashing the JSON, so sealing can skip rows whose content
    was seen before and canonicalise only the new ones. `sha256` names the SQL function that
    hashes (`chain.sha256_function`, or DuckDB's own `sha256`: same hex).
    """
    columns = _columns(con, source.table)
    if not columns:
        return None
    stable = [c for c in columns if c[0] not in source.volatile]
    hashed = []
    for name, kind in stable:
        hashed.append(_quote(name))
        if kind.endswith("[]"):
            hashed.append(f"{_quote(name)} IS NULL")
    key = ", ".join(f"coalesce({_quote(k)}::VARCHAR, '')" for k in source.key)
    stable_json = f"to_json({_struct(stable)})::VARCHAR"
    payload_json = f"to_json({_struct(columns)})::VARCHAR"
    return SourceSql(
        table=_quote(source.table),
        fingerprint=f"hash({', '.join(hashed)})",
        entity_key=f"concat_ws('/', {key})",
        stable_json=stable_json,
        content_digest=f"{sha256}({stable_json})",
        payload_json=payload_json,
    )


def envelope_sql(at: str, digest: str, key: str, run_id: str, event_type: str) -> str:
    """SQL for an entry's canonical envelope text, given SQL expressions for its five members.

    Keys sorted, no spaces, each value a JSON string rendered by DuckDB's `to_json`; the
    sealer and the benchmarks build entries with this one function.
    """
    members = (("at", at), ("digest", digest), ("key", key), ("run_id", run_id),
               ("type", event_type))  # fmt: skip
    parts = [
        f"'{',' if i else '{'}\"{name}\":' || to_json(({value})::VARCHAR)::VARCHAR"
        for i, (name, value) in enumerate(members)
    ]
    return "(" + " || ".join(parts) + " || '}')"


ROW_ID = '"__audit_rowid"'


class SourceSlices:
    """One source table's unseen rows, in slices that a seal commits one at a time.

    `find_unseen` scans the table once: the fingerprints not in `audit_seen_rows` go to the
    temporary table `audit_unseen` with their row counts, one hash join for the whole table
    however large the cache. The unseen rows are then cut into slices of about `rows` rows by
    a hash of the table's key columns, so a slice is defined by the rows' content, not by
    rowids (which a checkpoint may renumber once a slice has committed), and every row of one
    entity is in one slice. `new_events` renders one slice's rows (entity key, digest,
    envelope, all by DuckDB) and keeps those whose (event, entity, digest) is not logged yet,
    once each; `fingerprints` hands the slice's fingerprints to `remember`, which records them
    on the sealing connection in the same transaction as the slice's entries (this connection
    may be a second one that reads ahead). A seal killed between slices keeps the committed
    ones, and the next seal's `find_unseen` no longer sees their rows. Needs
    `chain.sha256_function`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: EventSource, rows: int) -> None:
        self.con, self.source, self.rows = con, source, rows
        self.sql = source_sql(con, source)
        self.count = 1

    def find_unseen(self) -> list[int]:
        """Collect the unseen fingerprints; return the numbers of the slices to seal."""
        if self.sql is None:
            return []
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE audit_unseen AS SELECT fingerprint, count(*) AS n "
            f"FROM (SELECT {self.sql.fingerprint} AS fingerprint FROM {self.sql.table}) "
            "WHERE fingerprint NOT IN "
            "(SELECT fingerprint FROM audit_seen_rows WHERE event_type = ?) GROUP BY ALL",
            [self.source.event_type],
        )
        (unseen,) = self.con.execute("SELECT coalesce(sum(n), 0) FROM audit_unseen").fetchall()[0]
        self.count = max(1, -(-int(unseen) // self.rows))
        return list(range(self.count)) if unseen else []

    def _slice_filter(self) -> str:
        """SQL condition: the row is in slice `$slice` of `$slices` (always true for one)."""
        if self.count == 1:
            return "$slice = 0"
        keys = ", ".join(_quote(k) for k in self.source.key)
        return f"hash({keys}) % $slices = $slice"

    def new_events(self, number: int, run_id: str, recorded_at: str) -> pa.Table:
        """Slice `number`'s events to append, in storage order: entity_key, content_digest, body.

        `body` is the envelope text; identical rows within the slice give one event. Leaves
        the slice's rows in the temporary table `audit_slice` for `fingerprints`.
        """
        sql = self.sql
        assert sql is not None
        where = {"slice": number, **({"slices": self.count} if self.count > 1 else {})}
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE audit_slice AS SELECT rid, fingerprint FROM "
            f"(SELECT rowid AS rid, {sql.fingerprint} AS fingerprint FROM {sql.table} "
            f"WHERE {self._slice_filter()}) "
            "WHERE fingerprint IN (SELECT fingerprint FROM audit_unseen)",
            where,
        )
        envelope = envelope_sql("$at", "content_digest", "entity_key", "$run_id", "$event_type")
        query = f"""
            SELECT entity_key, content_digest, {envelope} AS body
            FROM (
                SELECT rowid AS {ROW_ID}, {sql.entity_key} AS entity_key,
                       {sql.content_digest} AS content_digest
                FROM {sql.table} WHERE rowid IN (SELECT rid FROM audit_slice)
            ) c ANTI JOIN audit_log_index i ON i.event_type = $event_type
                AND i.entity_key = c.entity_key AND i.content_digest = c.content_digest
            QUALIFY row_number() OVER (
                PARTITION BY entity_key, content_digest ORDER BY {ROW_ID}) = 1
            ORDER BY {ROW_ID}
        """
        params = {"event_type": self.source.event_type, "at": recorded_at, "run_id": run_id}
        return self.con.sql(query, params=params).to_arrow_table()

    def fingerprints(self) -> pa.Table:
        """The slice's distinct fingerprints (column `fingerprint`), for `remember`."""
        seen = self.con.sql("SELECT DISTINCT fingerprint FROM audit_slice").to_arrow_table()
        self.con.execute("DROP TABLE audit_slice")
        return seen

    def close(self) -> None:
        """Drop the table's unseen fingerprints (a no-op when `find_unseen` found none)."""
        self.con.execute("DROP TABLE IF EXISTS audit_unseen")


def remember(con: duckdb.DuckDBPyConnection, event_type: str, fingerprints: pa.Table) -> int:
    """Record a slice's fingerprints as seen, in its entries' transaction; return how many."""
    con.register("incoming_fingerprints", fingerprints)
    try:
        con.execute(
            "INSERT INTO audit_seen_rows SELECT ?, fingerprint FROM incoming_fingerprints",
            [event_type],
        )
    finally:
        con.unregister("incoming_fingerprints")
    return fingerprints.num_rows


def unlogged_rows(
    con: duckdb.DuckDBPyConnection, sources: Sequence[EventSource]
) -> tuple[int, str | None]:
    """How many lineage rows have content never logged, and the first (event type and key).

    Recomputes every row's digest (no fingerprint shortcut): this is the verifier's check, so
    it relies on SHA-256 only. Runs in DuckDB; only the hash function sees the rows, in
    Arrow chunks.
    """
    total, first = 0, None
    with sha256_function(con):
        for source in sources:
            sql = source_sql(con, source)
            if sql is None:
                continue
            count, smallest = con.execute(
                f"SELECT count(*), min(s.entity_key) FROM (SELECT ? AS event_type, "
                f"{sql.entity_key} AS entity_key, {sql.content_digest} AS content_digest "
                f"FROM {sql.table}) s ANTI JOIN audit_log_index i "
                "ON i.event_type = s.event_type AND i.entity_key = s.entity_key "
                "AND i.content_digest = s.content_digest",
                [source.event_type],
            ).fetchall()[0]
            if count and first is None:
                first = f"{source.event_type} {smallest}"
            total += int(count)
    return total, first


def vanished_rows(
    con: duckdb.DuckDBPyConnection, sources: Sequence[EventSource]
) -> tuple[int, str | None]:
    """Entities the log holds for an append-only table that the table no longer has.

    The log keeps digests, not rows, so a deleted lineage row cannot be re-read from it; but
    rows of append-only tables (executions, verdicts, ...) never leave their table, so a
    logged entity missing there was deleted after the fact. Read from the log itself (not the
    index, which is only a cache); returns the count and the first (event type and key).
    """
    present = []
    for source in sources:
        sql = source_sql(con, source) if source.append_only else None
        if sql is not None:
            present.append(
                f"SELECT '{source.event_type}' AS event_type, {sql.entity_key} AS entity_key "
                f"FROM {sql.table}"
            )
    if not present:
        return 0, None
    types = [s.event_type for s in sources if s.append_only]
    count, first = con.execute(
        f"""
        WITH logged AS (
            SELECT DISTINCT json_extract_string(envelope, '$.type') AS event_type,
                   json_extract_string(envelope, '$.key') AS entity_key
            FROM (SELECT substr(entry, 66) AS envelope FROM audit_log)
            WHERE json_extract_string(envelope, '$.type') IN (SELECT unnest($types::VARCHAR[]))
        )
        SELECT count(*), min(event_type || ' ' || entity_key)
        FROM logged ANTI JOIN ({" UNION ALL ".join(present)}) p USING (event_type, entity_key)
        """,
        {"types": types},
    ).fetchall()[0]
    return int(count), first

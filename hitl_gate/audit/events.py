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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from hitl_gate.audit.chain import SHA256_FUNCTION, sha256_function
from hitl_gate.core.slices import consecutive_groups

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class EventSource:
    """A lineage table whose rows are logged as events of one type (one line of `EVENT_SOURCES`).

    `append_only` makes the table insert-once: a row, once written and sealed, is never replaced
    or deleted, so its key is logged with exactly one digest. Any other content under that key
    (an edit) is tampering: the seal refuses to log it (`SealRefused`) and `verify` names the
    table, key and entry. Without it the table is versioned: a row may legitimately change (a
    re-run re-decides a day, retention redacts a value, an escalation is resolved), and every
    distinct content is logged as the next version of the entity, the earlier ones staying in
    the chain as its history.
    """

    event_type: str
    table: str
    key: tuple[str, ...]
    volatile: tuple[str, ...] = ()
    append_only: bool = False  # insert-once: a row is never replaced or deleted (see above)


# Every sealed table: adding one is one line (a table missing from the database, e.g. a stage
# not deployed yet, is skipped).
EVENT_SOURCES: tuple[EventSource, ...] = (
    EventSource("people_act", "people_acts", ("seq",), append_only=True),  # the registry log
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
    EventSource("review_assigned", "review_assignments", ("batch_id", "seq"), append_only=True),
    EventSource("verdict_file_received", "verdict_files", ("file_sha256",), append_only=True),
    # The review portal (docs/portal.md): enrolments, sign-in events, verdict attestations.
    EventSource("portal_enrolment", "portal_enrolments", ("enrolment_id",), append_only=True),
    EventSource("portal_event", "portal_events", ("event_id",), append_only=True),
    EventSource("portal_verdict", "portal_verdicts", ("attestation_sha256",), append_only=True),
    EventSource(
        "verdict_opinion", "verdict_opinions", ("domain", "case_id", "reviewer_id"),
        append_only=True,
    ),
    EventSource("verdict", "verdicts", ("domain", "case_id"), append_only=True),
    # An intake killed before its seal, recovered (review/intake/recovery.py).
    EventSource("intake_recovered", "intake_recoveries", ("file_sha256",), append_only=True),
    EventSource(
        "verdict_rejected", "verdict_rejections",
        ("file_sha256", "row_number", "case_id", "column_name", "message"),
    ),
    EventSource("escalation", "review_escalations", ("escalation_id",)),  # resolved_at is set
    EventSource("escalation_batch_exported", "escalation_batches", ("batch_id",), ("run_id",)),
    EventSource(
        "escalation_exported", "escalation_batch_cases", ("escalation_id",), append_only=True
    ),
    EventSource("batch_closed", "review_batch_closures", ("batch_id",), append_only=True),
    EventSource(
        "review_expired", "review_expiry_actions", ("domain", "batch_id", "case_id"),
        append_only=True,
    ),
    EventSource("reminder_sent", "review_reminders", ("reminder_id",), append_only=True),
    EventSource("portal_reassigned", "portal_reassignments", ("batch_id", "seq"), append_only=True),
    EventSource("gold_case_seeded", "review_gold_cases", ("domain", "case_id"), append_only=True),
    EventSource(
        "gold_case_declared", "review_gold_declared", ("domain", "case_id"), append_only=True,
    ),
    EventSource("conflict_resolved", "conflict_resolutions", ("escalation_id",), append_only=True),
    EventSource("policy_activation", "policy_activations", ("domain", "seq"), append_only=True),
    EventSource("automation_halt", "automation_halts", ("domain", "seq"), append_only=True),
    EventSource("policy_shadow_set", "policy_shadows", ("domain", "seq"), append_only=True),
    EventSource(
        "model_promotion", "model_promotions", ("model_name", "alias", "promoted_at"),
        append_only=True,
    ),
    EventSource("execution", "executions", ("domain", "case_id"), append_only=True),
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

SOURCES_BY_TYPE = {source.event_type: source for source in EVENT_SOURCES}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return table_columns(con, [table]).get(table, [])


def table_columns(
    con: duckdb.DuckDBPyConnection, tables: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """(column, type) of each of `tables` that exists, in table order; one catalogue query.

    A seal or a verify reads all ~35 source tables: asking the catalogue once instead of per
    table is most of what they cost on a small database (each query pays DuckDB's planning).
    """
    rows = con.execute(  # DuckDB's catalogue, of which `information_schema.columns` is a view
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND list_contains(?, table_name) "
        "ORDER BY table_name, column_index",
        [list(tables)],
    ).fetchall()
    found: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in rows:
        found.setdefault(str(table), []).append((str(name), str(kind)))
    return found


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
    con: duckdb.DuckDBPyConnection,
    source: EventSource,
    sha256: str = SHA256_FUNCTION,
    columns: Sequence[tuple[str, str]] | None = None,
) -> SourceSql | None:
    """The expressions of `source`, or None when its table does not exist (stage not deployed).

    The fingerprint is DuckDB's `hash()` over the same stable columns the digest covers, plus
    a null flag for list columns (`hash` gives NULL and an empty list the same value). It costs
    a small fraction of rendering and hashing the JSON, so sealing can skip rows whose content
    was seen before and canonicalise only the new ones. `sha256` names the SQL function that
    hashes (`chain.sha256_function`, or DuckDB's own `sha256`: same hex). `columns`: the
    table's (name, type) as `table_columns` read them for several tables at once (read here
    when None).
    """
    if columns is None:
        columns = _columns(con, source.table)
    if not columns:
        return None
    stable = [c for c in columns if c[0] not in source.volatile]
    hashed = []
    for name, kind in stable:
        hashed.append(_quote(name))
        if kind.endswith("[]"):
            hashed.append(f"{_quote(name)} IS NULL")
    kinds = dict(columns)
    # Key columns in their canonical text (a timestamp key reads the same in any time zone).
    key = ", ".join(f"coalesce(({canonical_value(k, kinds[k])})::VARCHAR, '')" for k in source.key)
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
LOG_INDEX = "audit_log_index"
# A fresh seal's (event type, entity key, content digest, seq) of what its log held before it
# began, read from the entries' envelopes: made only when the log held an entry then.
FRESH_LOGGED = "audit_fresh_logged"
_NO_CLASHES = pa.table(
    {
        "rid": pa.array([], pa.int64()),
        "entity_key": pa.array([], pa.string()),
        "content_digest": pa.array([], pa.string()),
        "logged_seq": pa.array([], pa.int64()),
        "logged_digest": pa.array([], pa.string()),
    }
)


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

    `fresh`: every row of the table is new to this database by construction (a run's segment,
    filled by `run_seal.pick_rows` with rows no seal had seen, and emptied after its seal), so
    no fingerprint is computed or remembered, and the log's index is neither read nor written
    (`seal._Appender`): every row is rendered, identical rows of an entity once (they are in
    one slice). What the log held before the seal began (a segment sealed again, e.g. a retried
    run's that still holds its rows) is read from its entries' own envelopes instead
    (`FRESH_LOGGED`), so no digest is logged twice and a clash is still found; a segment's
    first seal, the pipeline's case, reads nothing.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        source: EventSource,
        rows: int,
        fresh: bool = False,
        columns: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        self.con, self.source, self.rows, self.fresh = con, source, rows, fresh
        self.sql = source_sql(con, source, columns=columns)  # `columns`: see `source_sql`
        self.count = 1
        self.logged: str | None = LOG_INDEX  # what holds the logged digests (None: nothing)

    def find_unseen(self) -> list[int]:
        """Collect the unseen fingerprints; return the numbers of the slices to seal."""
        if self.sql is None:
            return []
        if self.fresh:
            (unseen,) = self.con.execute(f"SELECT count(*) FROM {self.sql.table}").fetchall()[0]
            self.count = max(1, -(-int(unseen) // self.rows))
            self.logged = self._logged_before() if unseen else None
            return list(range(self.count)) if unseen else []
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

    def _logged_before(self) -> str | None:
        """A fresh seal's logged digests of this event type, from the log's envelopes (None:
        the log is empty, nothing to compare with). Slices are disjoint by entity, so entries
        this seal appends meanwhile never hold a slice's entity."""
        if not self.con.execute("SELECT EXISTS (SELECT 1 FROM audit_log)").fetchall()[0][0]:
            return None
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {FRESH_LOGGED} AS SELECT e[1] AS event_type, "
            "e[2] AS entity_key, e[3] AS content_digest, seq FROM (SELECT seq, "
            "json_extract_string(substr(entry, 66), ['$.type', '$.key', '$.digest']) AS e "
            "FROM audit_log) WHERE e[1] = ?",
            [self.source.event_type],
        )
        return FRESH_LOGGED

    def _slice_filter(self) -> str:
        """SQL condition: the row is in slice `$slice` of `$slices` (always true for one)."""
        if self.count == 1:
            return "$slice = 0"
        keys = ", ".join(_quote(k) for k in self.source.key)
        return f"hash({keys}) % $slices = $slice"

    def new_events(self, number: int, run_id: str, recorded_at: str) -> tuple[pa.Table, pa.Table]:
        """Slice `number`'s events to append, and its clashes.

        Events, in storage order: entity_key, content_digest, body (the envelope text);
        identical rows within the slice give one event. Clashes (insert-once tables only):
        entity_key, content_digest, logged_seq, logged_digest of each row whose key the log
        already holds with another content, i.e. a row edited after it was sealed; they are
        not among the events and their fingerprints are left out of `fingerprints`, so every
        later seal finds them again. Leaves the slice's rows in `audit_slice`.
        """
        sql = self.sql
        assert sql is not None
        where = {"slice": number, **({"slices": self.count} if self.count > 1 else {})}
        if self.fresh:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE audit_slice AS SELECT rowid AS rid, "
                f"NULL::UBIGINT AS fingerprint FROM {sql.table} WHERE {self._slice_filter()}",
                where,
            )
        else:
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE audit_slice AS SELECT rid, fingerprint FROM "
                f"(SELECT rowid AS rid, {sql.fingerprint} AS fingerprint FROM {sql.table} "
                f"WHERE {self._slice_filter()}) "
                "WHERE fingerprint IN (SELECT fingerprint FROM audit_unseen)",
                where,
            )
        envelope = envelope_sql("$at", "content_digest", "entity_key", "$run_id", "$event_type")
        logged = (
            f"ANTI JOIN {self.logged} i ON i.event_type = $event_type "
            "AND i.entity_key = c.entity_key AND i.content_digest = c.content_digest"
            if self.logged is not None
            else ""
        )
        query = f"""
            SELECT {ROW_ID}, entity_key, content_digest, {envelope} AS body
            FROM (
                SELECT rowid AS {ROW_ID}, {sql.entity_key} AS entity_key,
                       {sql.content_digest} AS content_digest
                FROM {sql.table} WHERE rowid IN (SELECT rid FROM audit_slice)
            ) c {logged}
            QUALIFY row_number() OVER (
                PARTITION BY entity_key, content_digest ORDER BY {ROW_ID}) = 1
            ORDER BY {ROW_ID}
        """
        params = {"event_type": self.source.event_type, "at": recorded_at, "run_id": run_id}
        events = self.con.sql(query, params=params).to_arrow_table()
        clashes = self._clashes(events) if self.source.append_only else _NO_CLASHES
        if clashes.num_rows:
            self.con.register("audit_clashes", clashes)
            try:
                self.con.execute(
                    "DELETE FROM audit_slice WHERE rid IN (SELECT rid FROM audit_clashes)"
                )
            finally:
                self.con.unregister("audit_clashes")
            rowids = events.column(ROW_ID.strip('"'))
            events = events.filter(pc.invert(pc.is_in(rowids, value_set=clashes.column("rid"))))
        return events.drop_columns([ROW_ID.strip('"')]), clashes.drop_columns(["rid"])

    def _clashes(self, events: pa.Table) -> pa.Table:
        """The new events whose key the log index already holds under another digest.

        Read from the index (the seal's cache) for speed: a forged or deleted index row can
        only make the seal log a second digest or skip a row, and `verify`, which reads the
        chain itself, reports both (`chain_findings`).
        """
        if not events.num_rows or self.logged is None:
            return _NO_CLASHES
        self.con.register("audit_new_events", events)
        try:
            return self.con.sql(
                f"""
                SELECT n.{ROW_ID} AS rid, n.entity_key, n.content_digest,
                       min(i.seq) AS logged_seq, arg_min(i.content_digest, i.seq) AS logged_digest
                FROM audit_new_events n JOIN {self.logged} i
                    ON i.event_type = $event_type AND i.entity_key = n.entity_key
                GROUP BY ALL ORDER BY logged_seq
                """,
                params={"event_type": self.source.event_type},
            ).to_arrow_table()
        finally:
            self.con.unregister("audit_new_events")

    def fingerprints(self) -> pa.Table:
        """The slice's distinct fingerprints (column `fingerprint`), for `remember` (none
        when `fresh`)."""
        seen = self.con.sql(
            "SELECT DISTINCT fingerprint FROM audit_slice WHERE fingerprint IS NOT NULL"
        ).to_arrow_table()
        self.con.execute("DROP TABLE audit_slice")
        return seen

    def close(self) -> None:
        """Drop the table's unseen fingerprints and a fresh seal's logged digests (no-ops
        when `find_unseen` made none)."""
        self.con.execute("DROP TABLE IF EXISTS audit_unseen")
        self.con.execute(f"DROP TABLE IF EXISTS {FRESH_LOGGED}")


def row_counts(
    con: duckdb.DuckDBPyConnection, tables: Sequence[tuple[EventSource, SourceSql]]
) -> dict[str, int]:
    """Per event type, the row count of its table: one query for all of `tables`.

    Exact (`count(*)`, which DuckDB answers from its row groups), so a table counted 0 can be
    left out of the statements that would only find nothing in it; the counts also size the
    groups `chain_findings` checks together.
    """
    return _count_each(con, tables, lambda i, sql: "true")


def unseen_counts(
    con: duckdb.DuckDBPyConnection, tables: Sequence[tuple[EventSource, SourceSql]]
) -> dict[str, int]:
    """Per event type, how many rows of its table `SourceSlices.find_unseen` would find unseen,
    for several tables in one query.

    The same condition as `find_unseen` (a fingerprint `NOT IN` the type's seen ones), so a
    table counted 0 here is one whose sweep would seal nothing: a seal skips it without the
    sweep's half a dozen statements, which on a small database were most of a seal's cost.
    """
    return _count_each(
        con,
        tables,
        lambda i, sql: f"{sql.fingerprint} NOT IN "
        f"(SELECT fingerprint FROM audit_seen_rows WHERE event_type = $type_{i})",
    )


def _count_each(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[tuple[EventSource, SourceSql]],
    where: Callable[[int, SourceSql], str],
) -> dict[str, int]:
    """Per event type, the rows of its table meeting `where(i, sql)` (`$type_{i}` is bound to
    the type): one `UNION ALL` query for all of `tables`."""
    if not tables:
        return {}
    params = {f"type_{i}": source.event_type for i, (source, _) in enumerate(tables)}
    query = " UNION ALL ".join(
        f"SELECT $type_{i}, count(*) FROM {sql.table} WHERE {where(i, sql)}"
        for i, (_, sql) in enumerate(tables)
    )
    return {str(t): int(n) for t, n in con.execute(query, params).fetchall()}


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


CHAIN_EVENTS = "audit_chain_events"
EXAMPLES = 5  # rows named per table and kind of finding; the count covers the rest


def load_chain_events(con: duckdb.DuckDBPyConnection) -> None:
    """Unpack every log entry's envelope into the temporary table `audit_chain_events`.

    (seq, event_type, entity_key, content_digest), read from the hashed entry text itself:
    what the lineage checks compare against is the chain, never `audit_log_index` (a cache
    anyone with write access can forge). One JSON parse per entry, by DuckDB.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHAIN_EVENTS} AS SELECT seq, e[1] AS event_type, "
        "e[2] AS entity_key, e[3] AS content_digest FROM (SELECT seq, json_extract_string("
        "substr(entry, 66), ['$.type', '$.key', '$.digest']) AS e FROM audit_log)"
    )


GROUP_ROWS = 1_000_000  # source rows checked by one set of queries (bounds `audit_rows`)


def chain_findings(con: duckdb.DuckDBPyConnection, sources: Sequence[EventSource]) -> list[str]:
    """Every lineage row checked against the chain: messages naming table, key and entry.

    Per source table, recomputing each row's SHA-256 digest (no fingerprint shortcut):
    - a row whose content the chain never logged: for an insert-once table whose key is
      logged, an edit after sealing; for a versioned one, an edit or a row written after the
      last seal; a key never logged, a row not sealed yet or inserted outside the pipeline;
    - an insert-once key logged with two contents: an edit laundered by a later seal;
    - an insert-once key logged but gone from its table: a deleted record.
    Needs `load_chain_events` first. Messages come per source in `sources` order.

    Tables are checked in groups of about `GROUP_ROWS` rows (a large table alone), each group
    by one pass over its tables (`UNION ALL`) and three queries over the chain's events keyed
    by event type, instead of four queries per table: on a small database, where most of the
    ~35 tables hold a handful of rows, DuckDB's per-query planning was the whole cost.
    """
    tables = [source.table for source in sources]
    columns = table_columns(con, tables)
    present = [
        (source, sql)
        for source in sources
        if (sql := source_sql(con, source, columns=columns.get(source.table, []))) is not None
    ]
    counts = row_counts(con, present)
    by_type: dict[str, list[str]] = {}
    with sha256_function(con):
        for group in _groups(present, counts):
            by_type.update(_group_findings(con, group, counts))
    return [message for source, _ in present for message in by_type[source.event_type]]


def _groups(
    present: list[tuple[EventSource, SourceSql]], counts: dict[str, int]
) -> list[list[tuple[EventSource, SourceSql]]]:
    """`present` cut into consecutive groups of at most `GROUP_ROWS` rows (a larger table is a
    group of its own)."""
    return consecutive_groups(present, lambda item: counts[item[0].event_type], GROUP_ROWS)


def _group_findings(
    con: duckdb.DuckDBPyConnection,
    group: list[tuple[EventSource, SourceSql]],
    counts: dict[str, int],
) -> dict[str, list[str]]:
    """The findings of each source of `group`, by event type (see `chain_findings`).

    Empty tables are left out of `audit_rows` (binding a table's canonical JSON is most of
    what the statement costs on a small database); their insert-once keys still go through
    the checks over the chain, so a logged record whose table was emptied is named.
    """
    filled = [(source, sql) for source, sql in group if counts[source.event_type]]
    params = {f"type_{i}": source.event_type for i, (source, _) in enumerate(filled)}
    rows = (
        " UNION ALL ".join(
            f"SELECT $type_{i} AS event_type, {sql.entity_key} AS entity_key, "
            f"{sql.content_digest} AS content_digest FROM {sql.table}"
            for i, (_, sql) in enumerate(filled)
        )
        or "SELECT NULL::VARCHAR AS event_type, NULL::VARCHAR AS entity_key, "
        "NULL::VARCHAR AS content_digest WHERE false"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE audit_rows AS SELECT DISTINCT * FROM ({rows})", params
    )
    logged = f"(SELECT * FROM {CHAIN_EVENTS} WHERE list_contains($types, event_type))"
    try:
        unlogged = _examples(con, f"""
            SELECT r.event_type, r.entity_key, r.content_digest, max(l.seq) AS logged_seq,
                   arg_max(l.content_digest, l.seq) AS logged_digest
            FROM (SELECT * FROM audit_rows r ANTI JOIN {logged} l
                  ON l.event_type = r.event_type AND l.entity_key = r.entity_key
                  AND l.content_digest = r.content_digest) r
            LEFT JOIN {logged} l ON l.event_type = r.event_type AND l.entity_key = r.entity_key
            GROUP BY ALL
            """, "entity_key, content_digest", {"types": list(params.values())})  # fmt: skip
        insert_once = [source.event_type for source, _ in group if source.append_only]
        twice, gone = {}, {}
        if insert_once:
            twice = _examples(con, f"""
                SELECT event_type, entity_key, list(seq ORDER BY seq) AS seqs,
                       count(DISTINCT content_digest) AS contents
                FROM {logged} GROUP BY ALL HAVING count(DISTINCT content_digest) > 1
                """, "entity_key", {"types": insert_once})  # fmt: skip
            gone = _examples(con, f"""
                SELECT l.event_type, l.entity_key, min(l.seq) AS seq FROM {logged} l
                ANTI JOIN audit_rows r
                    ON r.event_type = l.event_type AND r.entity_key = l.entity_key
                GROUP BY ALL
                """, "seq, entity_key", {"types": insert_once})  # fmt: skip
    finally:
        con.execute("DROP TABLE IF EXISTS audit_rows")
    findings: dict[str, list[str]] = {}
    for source, _ in group:
        findings[source.event_type] = _source_findings(
            source, unlogged.get(source.event_type), twice.get(source.event_type),
            gone.get(source.event_type),
        )  # fmt: skip
    return findings


_Examples = tuple[list[tuple], int]  # up to EXAMPLES rows (without their event type), and how many


def _examples(
    con: duckdb.DuckDBPyConnection, query: str, order: str, params: dict | None = None
) -> dict[str, _Examples]:
    """The first `EXAMPLES` rows of `query` per event type in `order`, and each type's count.

    `query`'s first column is the event type; only its examples are fetched, however many rows
    differ.
    """
    rows = con.execute(
        f"""
        SELECT *, count(*) OVER (PARTITION BY event_type) AS audit_total FROM ({query})
        QUALIFY row_number() OVER (PARTITION BY event_type ORDER BY {order}) <= {EXAMPLES}
        ORDER BY event_type, {order}
        """,
        params or {},
    ).fetchall()
    found: dict[str, _Examples] = {}
    for event_type, *values, total in rows:
        found.setdefault(str(event_type), ([], int(total)))[0].append(tuple(values))
    return found


def _source_findings(
    source: EventSource,
    unlogged: _Examples | None,
    twice: _Examples | None,
    gone: _Examples | None,
) -> list[str]:
    table = source.table
    findings: list[str] = []
    if unlogged is not None:
        rows, total = unlogged
        findings += [_unlogged_finding(source, row) for row in rows]
        if total > EXAMPLES:
            findings.append(f"{table}: {total - EXAMPLES} more rows differ from the audit log")
    if twice is not None:
        rows, total = twice
        for key, seqs, n in rows:
            findings.append(f"{table} {key}: insert-once record logged with {n} different "
                             f"contents (entries seq {', '.join(map(str, seqs))}): edited after "
                             "sealing, then sealed again")  # fmt: skip
        if total > EXAMPLES:
            findings.append(f"{table}: {total - EXAMPLES} more "
                             "insert-once keys logged with several contents")  # fmt: skip
    if gone is not None:
        rows, total = gone
        for key, seq in rows:
            findings.append(f"{table} {key}: insert-once record logged at entry seq "
                             f"{seq} was deleted from its table")  # fmt: skip
        if total > EXAMPLES:
            findings.append(f"{table}: {total - EXAMPLES} more "
                             "logged insert-once records were deleted")  # fmt: skip
    return findings


def _unlogged_finding(source: EventSource, row: tuple) -> str:
    key, digest, seq, logged_digest = row
    where = f"{source.table} {key}"
    if seq is None:
        return (f"{where}: not in the audit log (written after the last seal, or inserted "
                   f"outside the pipeline); row digest {digest[:16]}")  # fmt: skip
    if source.append_only:
        return (f"{where}: insert-once record changed after it was sealed: entry seq {seq} "
                   f"logged digest {logged_digest[:16]}, the row now hashes to {digest[:16]} "
                   "(tampering: restore the logged content)")  # fmt: skip
    return (f"{where}: content matches no logged version (latest: entry seq {seq}, digest "
               f"{logged_digest[:16]}; row {digest[:16]}): edited after sealing, or "
               "written after the last seal")  # fmt: skip

"""The honest floor: the baseline plus the work no deployment may skip, in one process.

`bench.baseline` decides a day (read, contract, features, score, route, write). A deployment
may not stop there: every record it keeps must be logged in a tamper-evident chain under a
signed checkpoint, the blocking expectations must hold before anything is scored, and the
day's metrics must be computed. The floor does that work as directly as a careful engineer
would, with no orchestration, no fingerprint cache, no lineage index and no slices:

- records: the day's input files (SHA-256 of each file's bytes), quarantined rows, decisions,
  executions of the automatic routes, adverse actions of the automatic declines, the cases
  sent for review and the partition's accounting row, each a DuckDB table;
- canonical rows and the chain: each record's canonical JSON rendered by DuckDB with the audit
  log's rules (`hitl_gate.audit.events.canonical_value`: UTC timestamps with `Z`, doubles as
  shortest round-trip text, keys in column order), its SHA-256 digest, the `{"at","digest",
  "key","run_id","type"}` envelope (`events.envelope_sql`), folded into the SHA-256 chain
  (`chain.fold_packed`: entry hash = SHA-256 of `<previous hash>|<envelope>`) and stored as
  the log `audit_log(seq, entry_hash, entry)`; the same byte forms the sealer hashes;
- the signed checkpoint: first/last seq, head hash and the 16-way Merkle root of the entry
  hashes, signed by the installation's checkpoint signer (`audit.keys.checkpoint_signer`: the
  Ed25519 key inside the home's SoftHSM2 PKCS#11 token, one `C_Sign` call, as the seal does);
- the blocking expectations: every expectation of the domain's blocking suites evaluated by
  one SQL aggregate over the stage's frame (GE's semantics: `mostly` over non-null values);
- the day's metrics: cases and shares per route, queue, risk band and final action, one
  `GROUP BY` each (what `observability.metrics.decision_metrics` computes for a day whose
  reviews are not back yet).

The ratio pipeline / floor is then the price of orchestration, hand-offs and lineage detail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from bench.baseline import BaselineDay, decide_day
from hitl_gate.audit.chain import (
    GENESIS_HASH,
    MERKLE_FANOUT,
    MerkleBuilder,
    fold_packed,
    sha256_function,
)
from hitl_gate.audit.events import TIMESTAMP_FORMAT, canonical_value, envelope_sql
from hitl_gate.audit.signer import CheckpointSigner
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.hashing import HASH_HEX_CHARS, hex_column
from hitl_gate.core.home import HitlPaths
from hitl_gate.quality.expectations import Expectation, load_expectations

AUTO_ACTIONS = {"auto_approve": "approve", "auto_decline": "decline"}
REVIEW_BATCH_CASES = 200  # cases per review batch, as the exporter cuts them
# What a decision record holds (the audit schema's `decisions`, 00_core.sql), not the inputs.
DECISION_COLUMNS = (
    "partition_date", "event_timestamp", "model_name", "model_version", "model_run_id",
    "model_artifact_digest", "pd", "score", "risk_band", "reason_codes", "policy_version",
    "policy_digest", "route", "route_rule_id", "route_reason_code", "review_queue",
    "review_priority",
)  # fmt: skip


@dataclass(frozen=True)
class Record:
    """One kind of logged record: its table, event type, key and volatile columns."""

    table: str
    event_type: str
    key: tuple[str, ...]
    volatile: tuple[str, ...] = ()


@dataclass
class FloorResult:
    """What the floor logged, signed, checked and measured for the day."""

    records: dict[str, int] = field(default_factory=dict)  # event type -> entries
    checkpoint: dict[str, Any] = field(default_factory=dict)
    expectations: list[tuple[str, bool, float | None]] = field(default_factory=list)
    metrics: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def entries(self) -> int:
        return sum(self.records.values())

    @property
    def blocked(self) -> bool:
        return not all(ok for _, ok, _ in self.expectations)


def run_floor(
    paths: HitlPaths, domain: DomainConfig, day: date, scratch: Path, signer: CheckpointSigner
) -> dict:
    """The baseline's day, then records, chain, signed checkpoint, expectations, metrics."""
    done = decide_day(paths, domain, day, scratch)
    result = floor_work(done, domain, day, signer, scratch, run_id=f"floor-{day}")
    routes = dict(done.routed.group_by("route").len().iter_rows())
    return {
        "quarantined": done.quarantined,
        **routes,
        "entries": result.entries,
        "blocked": result.blocked,
        "metric_rows": result.metrics.height,
    }


def floor_work(
    done: BaselineDay,
    domain: DomainConfig,
    day: date,
    signer: CheckpointSigner,
    scratch: Path,
    *,
    run_id: str,
) -> FloorResult:
    """Everything the floor adds to the baseline, on the baseline's DuckDB file."""
    now = datetime.now(UTC)
    at = now.strftime(TIMESTAMP_FORMAT)
    result = FloorResult()
    con = duckdb.connect(str(done.decisions_db))
    try:
        result.expectations = blocking_expectations(con, domain, done.case_features)
        records = write_records(con, domain, day, done, run_id, now)
        head, merkle = GENESIS_HASH, MerkleBuilder(MERKLE_FANOUT)
        con.execute(
            "CREATE OR REPLACE TABLE audit_log (seq BIGINT, entry_hash VARCHAR, entry VARCHAR)"
        )
        with sha256_function(con) as sha256:
            for record in records:
                appended, head = chain_table(con, record, head, merkle, sha256, run_id, at)
                result.records[record.event_type] = appended
        result.checkpoint = sign_checkpoint(signer, head, merkle, run_id, at)
        (scratch / "checkpoint.json").write_text(
            json.dumps(result.checkpoint, sort_keys=True, indent=2) + "\n", encoding="utf-8"
        )
        result.metrics = day_metrics(con, day)
    finally:
        con.close()
    return result


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_records(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    day: date,
    done: BaselineDay,
    run_id: str,
    now: datetime,
) -> list[Record]:
    """Create the day's record tables beside `decisions`; return them in logging order."""
    case_id = domain.case_id
    values = {"domain": domain.name, "day": day, "run_id": run_id, "now": now}

    def run(sql: str) -> None:
        """Execute `sql` with the values it names (DuckDB refuses unused ones)."""
        con.execute(sql, {k: v for k, v in values.items() if f"${k}" in sql})

    files = pl.DataFrame(
        {
            "file_path": [str(p) for p in done.files],
            "file_sha256": [_file_sha256(p) for p in done.files],
            "size_bytes": [p.stat().st_size for p in done.files],
        },
        schema={"file_path": pl.String, "file_sha256": pl.String, "size_bytes": pl.Int64},
    )
    con.register("floor_files", files.to_arrow())
    run(
        "CREATE OR REPLACE TABLE input_files AS SELECT $domain AS domain, $day::DATE AS "
        "partition_date, *, $run_id AS run_id, $now::TIMESTAMPTZ AS recorded_at "
        "FROM floor_files"
    )
    rejected = (
        done.flagged.with_row_index("row_number")
        .filter(~pl.col("_valid"))
        .select("row_number", pl.col(case_id).cast(pl.String).alias("case_id"))
    )
    con.register("floor_rejected", rejected.to_arrow())
    run(
        "CREATE OR REPLACE TABLE quarantine AS SELECT $domain AS domain, $day::DATE AS "
        "partition_date, row_number, case_id, 'contract' AS check_name, $run_id AS run_id "
        "FROM floor_rejected"
    )
    present = {name for (name,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'decisions'"
    ).fetchall()}  # fmt: skip
    kept = ", ".join(_quote(c) for c in DECISION_COLUMNS if c in present)
    run(
        "CREATE OR REPLACE TABLE case_decisions AS SELECT $domain AS domain, "
        f"{_quote(case_id)}::VARCHAR AS case_id, {kept}, $run_id AS run_id, "
        "$now::TIMESTAMPTZ AS decided_at FROM decisions"
    )
    actions = " ".join(f"WHEN '{r}' THEN '{a}'" for r, a in AUTO_ACTIONS.items())
    con.execute(
        "CREATE OR REPLACE TABLE executions AS SELECT domain, case_id, partition_date, "
        f"CASE route {actions} END AS action, 'policy' AS decided_by, route, policy_version, "
        "model_version, reason_codes, run_id, decided_at AS executed_at FROM case_decisions "
        "WHERE route IN ('auto_approve', 'auto_decline') ORDER BY rowid"
    )
    con.execute(
        "CREATE OR REPLACE TABLE adverse_actions AS SELECT domain, case_id, partition_date, "
        "decided_by, reason_codes, run_id, executed_at AS issued_at FROM executions "
        "WHERE action = 'decline' ORDER BY rowid"
    )
    con.execute(
        "CREATE OR REPLACE TABLE review_batch_cases AS SELECT concat_ws('-', domain, "
        "strftime(partition_date, '%Y%m%d'), review_queue, ((row_number() OVER (PARTITION BY "
        f"review_queue ORDER BY rowid) - 1) // {REVIEW_BATCH_CASES})::VARCHAR) AS batch_id, "
        "domain, case_id FROM case_decisions WHERE route = 'human_review' ORDER BY rowid"
    )
    run(
        "CREATE OR REPLACE TABLE partition_accounting AS SELECT $domain AS domain, "
        "$day::DATE AS partition_date, (SELECT count(*) FROM case_decisions) + "
        "(SELECT count(*) FROM quarantine) AS rows_read, (SELECT count(*) FROM quarantine) "
        "AS rows_quarantined, (SELECT count(*) FROM executions) AS executed, "
        "(SELECT count(*) FROM review_batch_cases) AS pending_review, true AS balanced, "
        "$run_id AS run_id, $now::TIMESTAMPTZ AS recorded_at"
    )
    con.unregister("floor_files")
    con.unregister("floor_rejected")
    return [
        Record("input_files", "input_file_recorded", ("domain", "partition_date", "file_sha256"),
               ("run_id", "recorded_at")),
        Record("quarantine", "row_quarantined", ("domain", "row_number", "check_name"),
               ("run_id",)),
        Record("case_decisions", "decision", ("domain", "case_id"), ("run_id", "decided_at")),
        Record("review_batch_cases", "case_sent_for_review", ("domain", "case_id")),
        Record("executions", "execution", ("domain", "case_id")),
        Record("adverse_actions", "adverse_action", ("domain", "case_id")),
        Record("partition_accounting", "partition_accounted", ("domain", "partition_date"),
               ("run_id", "recorded_at")),
    ]  # fmt: skip


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def canonical_sql(con: duckdb.DuckDBPyConnection, record: Record) -> tuple[str, str]:
    """SQL for a record's canonical JSON (stable columns) and entity key, by the log's rules."""
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [record.table],
    ).fetchall()
    kinds = dict(columns)
    stable = ", ".join(
        f"{_quote(n)} := {canonical_value(n, t)}" for n, t in columns if n not in record.volatile
    )
    key = ", ".join(f"coalesce(({canonical_value(k, kinds[k])})::VARCHAR, '')" for k in record.key)
    return f"to_json(struct_pack({stable}))::VARCHAR", f"concat_ws('/', {key})"


def chain_table(
    con: duckdb.DuckDBPyConnection,
    record: Record,
    head: str,
    merkle: MerkleBuilder,
    sha256: str,
    run_id: str,
    at: str,
) -> tuple[int, str]:
    """Log every row of `record.table` after `head`: canonical digest, envelope, chain link.

    Returns the entries appended and the new head. The rows are folded in table order.
    """
    canonical, key = canonical_sql(con, record)
    envelope = envelope_sql("$at", f"{sha256}({canonical})", key, "$run_id", "$event_type")
    bodies = con.sql(
        f"SELECT {envelope} AS body FROM {_quote(record.table)} ORDER BY rowid",
        params={"at": at, "run_id": run_id, "event_type": record.event_type},
    ).to_arrow_table()
    if not bodies.num_rows:
        return 0, head
    hexed = fold_packed(head, bodies.column("body"))
    (first,) = con.execute("SELECT count(*) + 1 FROM audit_log").fetchall()[0]
    entries = pa.table(
        {
            "seq": pa.array(np.arange(first, first + bodies.num_rows, dtype=np.int64)),
            "entry_hash": hex_column(hexed),
            "prev_hash": hex_column(head.encode("ascii") + hexed[:-HASH_HEX_CHARS]),
            "body": bodies.column("body"),
        }
    )
    con.register("floor_entries", entries)
    try:
        con.execute(
            "INSERT INTO audit_log SELECT seq, entry_hash, prev_hash || '|' || body "
            "FROM floor_entries"
        )
    finally:
        con.unregister("floor_entries")
    merkle.add_hex(hexed)
    return bodies.num_rows, hexed[-HASH_HEX_CHARS:].decode("ascii")


def sign_checkpoint(
    signer: CheckpointSigner, head: str, merkle: MerkleBuilder, run_id: str, at: str
) -> dict[str, Any]:
    """The checkpoint over every entry of the day, signed by the installation's signer."""
    from hitl_gate.audit.seal import signed_checkpoint

    return signed_checkpoint(1, head, merkle, run_id, at, signer)


def _expectation_sql(e: Expectation) -> tuple[str, str]:
    """(SQL observed value, SQL success) of one expectation over table `stage`."""
    if e.expectation == "expect_table_row_count_to_be_between":
        observed = "count(*)::DOUBLE"
        return observed, _between(observed, e.min_value, e.max_value)
    col = _quote(str(e.column))
    if e.expectation == "expect_column_mean_to_be_between":
        observed = f"avg({col})::DOUBLE"
        return observed, _between(observed, e.min_value, e.max_value)
    if e.expectation == "expect_column_values_to_not_be_null":
        observed = f"count({col}) / greatest(count(*), 1)"
    elif e.expectation == "expect_column_values_to_be_between":
        inside = _between(col, e.min_value, e.max_value)
        observed = f"count(*) FILTER ({inside}) / greatest(count({col}), 1)"
    elif e.expectation == "expect_column_values_to_be_in_set":
        values = ", ".join(_literal(v) for v in e.value_set or [])
        observed = f"count(*) FILTER ({col} IN ({values})) / greatest(count({col}), 1)"
    else:  # the trailing row count needs earlier days: never in a blocking suite here
        raise ValueError(f"the floor does not evaluate {e.expectation} in a blocking suite")
    return observed, f"{observed} >= {e.mostly!r}"


def _between(value: str, low: float | None, high: float | None) -> str:
    parts = [f"{value} >= {low!r}"] if low is not None else []
    parts += [f"{value} <= {high!r}"] if high is not None else []
    return " AND ".join(parts) or "true"


def _literal(value: str | int | float) -> str:
    """A set member as SQL: numbers compare as numbers (a DOUBLE 36.0 is in [36, 60])."""
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def blocking_expectations(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, case_features: pl.DataFrame
) -> list[tuple[str, bool, float | None]]:
    """(label, success, observed) of every expectation of the domain's blocking suites.

    The floor holds the `case_features` frame only (the suite the shipped domains block on);
    a blocking suite on another stage is evaluated on that frame's columns all the same.
    """
    if domain.expectations is None:
        return []
    suites = load_expectations(domain.source_dir / domain.expectations).suites
    checks = [e for suite in suites.values() if suite.blocking for e in suite.expectations]
    if not checks:
        return []
    parts = [_expectation_sql(e) for e in checks]
    select = ", ".join(f"{observed}, {success}" for observed, success in parts)
    con.register("stage", case_features.to_arrow())
    try:
        row = con.execute(f"SELECT {select} FROM stage").fetchall()[0]
    finally:
        con.unregister("stage")
    return [
        (e.label, bool(row[2 * i + 1]), None if row[2 * i] is None else float(row[2 * i]))
        for i, e in enumerate(checks)
    ]


# (dimension, column, table filter): the day's count metrics, as decision_metrics names them.
_COUNTS: Sequence[tuple[str, str, str]] = (
    ("route", "route", "case_decisions"),
    ("queue", "review_queue", "case_decisions WHERE route = 'human_review'"),
    ("risk_band", "risk_band", "case_decisions"),
    ("final_action", "action", "executions"),
)


def day_metrics(con: duckdb.DuckDBPyConnection, day: date) -> pl.DataFrame:
    """Cases and shares of the day per route, queue, risk band and final action (long form)."""
    parts = ["SELECT 'cases' AS metric, 'all' AS dimension, 'all' AS key, "
             "count(*)::DOUBLE AS value FROM case_decisions"]  # fmt: skip
    for dimension, column, source in _COUNTS:
        grouped = (
            f"SELECT coalesce({_quote(column)}::VARCHAR, '(none)') AS key, count(*) AS n "
            f"FROM {source} GROUP BY ALL"
        )
        parts.append(
            f"SELECT 'cases', '{dimension}', key, n::DOUBLE FROM ({grouped})"
            f" UNION ALL SELECT 'rate', '{dimension}', key, n / sum(n) OVER () FROM ({grouped})"
        )
    query = " UNION ALL ".join(f"({p})" for p in parts)
    con.execute(
        f"CREATE OR REPLACE TABLE decision_metrics AS SELECT $day::DATE AS partition_date, * "
        f"FROM ({query}) ORDER BY metric, dimension, key",
        {"day": day},
    )
    return con.sql("SELECT * FROM decision_metrics ORDER BY metric, dimension, key").pl()

"""`hitl audit export`: a self-contained bundle a regulator checks without our code or database.

Scope: the cases DECIDED in a range of partition dates (`decisions.partition_date`, the
business day the application belongs to, which is also how runs, backfills and accounting are
cut), optionally of one domain. Exported with them: every lineage row about those cases (their
decision, batch membership, verdict, execution, adverse action, outcomes), the day-scoped rows
of those days (input files, quarantine, batches, accounting) and the policy and model versions
and verdict files they reference.

Proof material: each exported row as its canonical JSON text (`events.source_sql(...).
stable_json`, rendered by DuckDB from the lineage table, never taken from a log entry), so its
content digest is SHA-256 of that line; the audit log entries of every checkpoint range that
holds one of those rows' events, whole, with the stored hash of the entry before each range;
the signed checkpoints and public keys. Envelope members read: `type`, `key`, `digest` only.
Plus Parquet and CSV copies of `case_trace` for the cases, a README, the standalone checker
(`bundle_check.py` as `verify_bundle.py`), `SHA256SUMS` and a manifest signed with the audit
key. The export checks its own output before returning.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb

from hitl_gate.audit import bundle_check
from hitl_gate.audit.bundle_check import (
    BUNDLE_FORMAT,
    HANDOVER_FIELDS,
    HANDOVER_GLOBAL,
    HANDOVERS,
    KEYS,
    LINEAGE_INDEX,
    MANIFEST,
    MANIFEST_SIGNATURE,
    SUMS,
)
from hitl_gate.audit.bundle_readme import README
from hitl_gate.audit.bundle_segments import (
    NO_SEGMENT_JOIN,
    SEGMENT_EVENTS_JOIN,
    SINGLE_CHAIN,
    BundleError,
    segment_events,
    write_segment_logs,
)
from hitl_gate.audit.chain import GENESIS_HASH
from hitl_gate.audit.events import EVENT_SOURCES, EventSource, source_sql, table_columns
from hitl_gate.audit.keys import public_key_hex
from hitl_gate.audit.run_segments import Segments
from hitl_gate.core.home import HitlPaths

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

ENTRY_BATCH = 50_000

# Rows of the scope: `t` is the lineage table, `b` the decisions of the range.
_RANGE = "b.partition_date BETWEEN $lo AND $hi AND ($domain::VARCHAR IS NULL OR b.domain = $domain)"
_DAYS = "t.partition_date BETWEEN $lo AND $hi AND ($domain::VARCHAR IS NULL OR t.domain = $domain)"
_CASES = (
    "EXISTS (SELECT 1 FROM decisions b WHERE b.domain = t.domain AND b.case_id = t.case_id "
    f"AND {_RANGE})"
)
_SPECIAL_SCOPES = {
    "policy_versions": (
        f"t.policy_digest IN (SELECT b.policy_digest FROM decisions b WHERE {_RANGE})"
    ),
    "model_versions": (
        "EXISTS (SELECT 1 FROM decisions b WHERE b.model_name = t.model_name "
        f"AND b.model_version = t.model_version AND {_RANGE})"
    ),
    "verdict_files": (
        "t.file_sha256 IN (SELECT v.file_sha256 FROM verdicts v JOIN decisions b "
        f"ON b.domain = v.domain AND b.case_id = v.case_id WHERE {_RANGE})"
    ),
    "verdict_rejections": f"t.case_id IN (SELECT b.case_id FROM decisions b WHERE {_RANGE})",
}


@dataclass(frozen=True)
class BundleScope:
    """Cases decided on partition days `start..end` (inclusive), of `domain` or of all."""

    start: date
    end: date
    domain: str | None = None

    def params(self) -> dict[str, Any]:
        return {"lo": self.start, "hi": self.end, "domain": self.domain}


@dataclass(frozen=True)
class BundleSummary:
    folder: Path
    cases: int
    rows: int
    entries: int
    checkpoints: int
    skipped_tables: tuple[str, ...]


def scope_filter(table: str, columns: set[str]) -> str | None:
    """The WHERE clause selecting `table`'s rows in scope (table alias `t`), or None."""
    if table in _SPECIAL_SCOPES:
        return _SPECIAL_SCOPES[table]
    if {"domain", "case_id"} <= columns:
        return _CASES
    if {"domain", "partition_date"} <= columns:
        return _DAYS
    return None


def export_bundle(
    con: duckdb.DuckDBPyConnection,
    scope: BundleScope,
    out: Path,
    signing_key: CheckpointSigner,
    segments: Segments | None = None,
) -> BundleSummary:
    """Write the bundle of `scope` into the new or empty folder `out`; check it; summarise.

    `segments`: where the per-run segments live (default: the `HitlPaths.segments_dir` of the
    home holding the database); a row sealed in one ships with its segment's checkpoint
    ranges, the global leaves and the signed global checkpoints (`bundle_segments.py`)."""
    if scope.end < scope.start:
        raise BundleError(f"--to {scope.end} is before --from {scope.start}")
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out}: not empty; export into a new folder")
    cases = int(con.execute(
        f"SELECT count(*) FROM decisions b WHERE {_RANGE}", scope.params()
    ).fetchall()[0][0])  # fmt: skip
    if not cases:
        raise BundleError(f"no cases decided on {scope.start}..{scope.end}: nothing to export")
    out.mkdir(parents=True, exist_ok=True)
    segments = segments or _segments_of(con)
    in_segments = segments is not None and segment_events(con)
    rows, seqs, skipped = _write_lineage(con, scope, out, in_segments)
    chain_seqs = seqs.pop(SINGLE_CHAIN, set())
    ranges, keys, entries = _write_log(con, chain_seqs, out)
    if seqs:
        assert segments is not None
        more_ranges, more_keys, more_entries = write_segment_logs(
            con, segments, seqs, out, _write_log
        )
        ranges, keys, entries = ranges + more_ranges, keys | more_keys, entries + more_entries
    _write_trace(con, scope, out)
    own_key = public_key_hex(signing_key)
    keys |= _write_handovers(con, out)
    (out / KEYS).write_text("".join(f"{k}\n" for k in sorted({*keys, own_key})), "ascii")
    (out / "public_key.pem").write_bytes(_public_pem(signing_key))
    (out / "README.md").write_text(README, encoding="utf-8")
    (out / "verify_bundle.py").write_text(
        Path(bundle_check.__file__).read_text(encoding="utf-8"), encoding="utf-8"
    )
    manifest = {
        "format": BUNDLE_FORMAT,
        "from": scope.start.isoformat(),
        "to": scope.end.isoformat(),
        "domain": scope.domain,
        "scope": "cases whose decisions.partition_date is within from..to (inclusive)",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signing_key": own_key,
        "cases": cases,
        "rows": rows,
        "ranges": ranges,
        "tables": {s.event_type: s.table for s in EVENT_SOURCES},
        "tables_without_scope": list(skipped),
    }
    _write_manifest(out, manifest, signing_key)
    report = bundle_check.check_bundle(out)
    if not report.ok:
        raise BundleError(f"{out}: the written bundle does not check out:\n{report.summary()}")
    return BundleSummary(out, cases, sum(rows.values()), entries, len(ranges), skipped)


def _segments_of(con: duckdb.DuckDBPyConnection) -> Segments | None:
    """The segments folder of the home whose `audit.duckdb` `con` has open (None: in memory)."""
    (path,) = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0]
    return Segments(HitlPaths.at(Path(path).parent).segments_dir) if path else None


def _write_lineage(
    con: duckdb.DuckDBPyConnection, scope: BundleScope, out: Path, in_segments: bool
) -> tuple[dict[str, int], dict[str, set[int]], tuple[str, ...]]:
    """One canonical JSON line per row and event type, and the index naming each row's entry
    (its `seq`, and its `segment` when a per-run segment logged it: empty for the single
    chain). Returns the counts, the seqs wanted per chain (`SINGLE_CHAIN`: the single one)
    and the tables without a scope."""
    folder = out / "lineage"
    folder.mkdir()
    counts: dict[str, int] = {}
    seqs: dict[str, set[int]] = {}
    skipped: list[str] = []
    index = io.StringIO()
    writer = csv.writer(index, lineterminator="\n")
    writer.writerow(["event_type", "line", "seq", "entity_key", "content_digest", "segment"])
    shapes = table_columns(con, [source.table for source in EVENT_SOURCES])  # one query
    for source in EVENT_SOURCES:
        rows = _scoped_rows(con, source, scope, in_segments, shapes.get(source.table, []))
        if rows is None:
            skipped.append(source.table)
            continue
        unlogged = [key for key, _, _, seq, _ in rows if seq is None]
        if unlogged:
            raise BundleError(
                f"{len(unlogged)} {source.table} rows in scope are not in the audit log "
                f"(first: {unlogged[0]}): edited after sealing or not sealed yet; "
                "`hitl audit verify` names each"
            )
        with (folder / f"{source.event_type}.jsonl").open("w", encoding="utf-8") as lines:
            for number, (key, digest, text, seq, segment) in enumerate(rows, start=1):
                _one_line(text, source.table)
                lines.write(text + "\n")
                writer.writerow([source.event_type, number, seq, key, digest, segment or ""])
                # logged: rows without a seq raised above
                seqs.setdefault(segment or SINGLE_CHAIN, set()).add(int(cast(int, seq)))
        counts[source.event_type] = len(rows)
    (out / LINEAGE_INDEX).write_text(index.getvalue(), encoding="utf-8")
    return counts, seqs, tuple(skipped)


def _scoped_rows(
    con: duckdb.DuckDBPyConnection,
    source: EventSource,
    scope: BundleScope,
    in_segments: bool,
    shape: Sequence[tuple[str, str]],
) -> list[tuple[str, str, str, int | None, str | None]] | None:
    """(entity key, content digest, canonical JSON, logged seq, segment) of the rows in scope:
    the single chain's entry when it logged the row, else a folded segment's
    (`bundle_segments.segment_events`, with `in_segments`). `shape`: the table's columns
    (`events.table_columns`; none: the table does not exist)."""
    sql = source_sql(con, source, sha256="sha256", columns=shape)
    if sql is None:
        return None
    columns = {name for name, _ in shape}
    where = scope_filter(source.table, columns)
    if where is None:
        return None
    logged = SEGMENT_EVENTS_JOIN if in_segments else NO_SEGMENT_JOIN
    return con.execute(
        f"""
        SELECT s.entity_key, s.content_digest, s.stable, coalesce(i.seq, g.seq) AS seq,
               CASE WHEN i.seq IS NULL THEN g.segment_id END AS segment
        FROM (SELECT DISTINCT entity_key, stable, sha256(stable) AS content_digest
              FROM (SELECT {sql.entity_key} AS entity_key, {sql.stable_json} AS stable
                    FROM {sql.table} t WHERE {where})) s
        LEFT JOIN audit_log_index i ON i.event_type = $event_type
            AND i.entity_key = s.entity_key AND i.content_digest = s.content_digest
        {logged}
        ORDER BY segment NULLS FIRST, seq NULLS FIRST, s.entity_key
        """,
        {**scope.params(), "event_type": source.event_type},
    ).fetchall()


def _one_line(text: str, where: str) -> None:
    """Bundle files are line-oriented: a canonical text never holds a raw newline or tab."""
    if "\n" in text or "\r" in text or "\t" in text:
        raise BundleError(f"{where}: canonical text holds a raw line break or tab")


def _write_log(
    con: duckdb.DuckDBPyConnection,
    seqs: set[int],
    out: Path,
    segment: str | None = None,
    folded_to: int | None = None,
) -> tuple[list[dict[str, Any]], set[str], int]:
    """Every checkpoint range holding one of `seqs`, whole, with its signed checkpoint.

    `con` is the single chain's database, or with `segment` that segment's own (files under
    `segments/<segment>/`), of which only checkpoints up to its folded `folded_to` count."""
    rows = con.execute(
        "SELECT * FROM audit_checkpoints WHERE last_seq <= ? ORDER BY last_seq",
        [folded_to if folded_to is not None else 2**62],
    ).fetchall()
    names = [d[0] for d in con.description]
    checkpoints = [dict(zip(names, r, strict=True)) for r in rows]
    where = f"segment {segment} " if segment else ""
    base = f"segments/{segment}/" if segment else ""
    wanted = sorted(seqs)
    chosen, position = [], 0
    for cp in checkpoints:
        first, last = int(cp["first_seq"]), int(cp["last_seq"])
        if position < len(wanted) and wanted[position] < first:
            raise BundleError(
                f"{where}audit log entry {wanted[position]} is not under a checkpoint"
            )
        if position < len(wanted) and wanted[position] <= last:
            chosen.append(cp)
            while position < len(wanted) and wanted[position] <= last:
                position += 1
    if position < len(wanted):
        raise BundleError(
            f"{where}audit log entry {wanted[position]} is not under a "
            + ("folded checkpoint" if segment else "checkpoint: seal")
        )
    (out / base / "log").mkdir(parents=True)
    (out / base / "checkpoints").mkdir()
    ranges, keys, total = [], set(), 0
    for cp in chosen:
        first, last = int(cp["first_seq"]), int(cp["last_seq"])
        entries = f"{base}log/entries-{first:012d}-{last:012d}.tsv"
        total += _write_entries(con, first, last, out / entries)
        checkpoint = f"{base}checkpoints/checkpoint-{last:012d}.json"
        (out / checkpoint).write_text(
            json.dumps(cp, sort_keys=True, indent=2, default=str) + "\n", encoding="utf-8"
        )
        keys.add(str(cp["public_key"]))
        ranges.append({
            **({"segment_id": segment} if segment else {}),
            "first_seq": first, "last_seq": last, "prev_hash": _stored_hash(con, first - 1),
            "entries_file": entries, "checkpoint_file": checkpoint,
        })  # fmt: skip
    return ranges, keys, total


def _write_handovers(con: duckdb.DuckDBPyConnection, out: Path) -> set[str]:
    """Every key hand-over, so the checker follows them from the pinned key; their keys."""
    rows = con.execute("SELECT * FROM audit_key_handovers ORDER BY after_seq").fetchall()
    names = [d[0] for d in con.description]
    keys: set[str] = set()
    for row in rows:
        record = dict(zip(names, row, strict=True))
        folder = out / HANDOVERS
        folder.mkdir(exist_ok=True)
        path = folder / f"key-handover-{int(record['after_seq']):012d}.json"
        fields = (*HANDOVER_FIELDS, "old_signature", "new_signature")
        shipped = {n: record[n] for n in fields}
        if record.get(HANDOVER_GLOBAL) is not None:  # signed when present
            shipped[HANDOVER_GLOBAL] = record[HANDOVER_GLOBAL]
        path.write_text(json.dumps(shipped, sort_keys=True, indent=2,
                                   default=str) + "\n", encoding="utf-8")  # fmt: skip
        keys |= {str(record["old_public_key"]), str(record["new_public_key"])}
    return keys


def _stored_hash(con: duckdb.DuckDBPyConnection, seq: int) -> str:
    if seq < 1:
        return GENESIS_HASH
    row = con.execute("SELECT entry_hash FROM audit_log WHERE seq = ?", [seq]).fetchall()
    if not row:
        raise BundleError(f"audit log entry {seq} is missing: run `hitl audit verify`")
    return str(row[0][0])


def _write_entries(con: duckdb.DuckDBPyConnection, first: int, last: int, path: Path) -> int:
    """`seq<TAB>entry_hash<TAB>entry` lines, streamed in batches; return how many."""
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        for seq, stored, entry in _entries(con, first, last):
            _one_line(entry, f"audit_log seq {seq}")
            handle.write(f"{seq}\t{stored}\t{entry}\n")
            written += 1
    if written != last - first + 1:
        raise BundleError(f"audit log {first}..{last}: {written} entries stored, run verify")
    return written


def _entries(con: duckdb.DuckDBPyConnection, first: int, last: int) -> Iterator[tuple]:
    cursor = con.execute(
        "SELECT seq, entry_hash, entry FROM audit_log WHERE seq BETWEEN ? AND ? ORDER BY seq",
        [first, last],
    )
    while batch := cursor.fetchmany(ENTRY_BATCH):
        yield from batch


def _write_trace(con: duckdb.DuckDBPyConnection, scope: BundleScope, out: Path) -> None:
    """`case_trace` of the cases as Parquet (typed) and CSV (lists as JSON text)."""
    kinds = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main' "
        "AND table_name = 'case_trace' ORDER BY ordinal_position"
    ).fetchall()
    flat = ", ".join(
        f'to_json("{n}")::VARCHAR AS "{n}"' if str(k).endswith("]") else f'"{n}"' for n, k in kinds
    )
    (out / "trace").mkdir()
    for select, write in (("*", "write_parquet"), (flat, "write_csv")):
        query = f"SELECT {select} FROM case_trace t WHERE {_CASES} ORDER BY domain, case_id"
        frame = con.sql(query, params=scope.params()).pl()
        suffix = "parquet" if write == "write_parquet" else "csv"
        getattr(frame, write)(out / "trace" / f"case_trace.{suffix}")


def _public_pem(signing_key: CheckpointSigner) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return signing_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _write_manifest(out: Path, manifest: dict[str, Any], signing_key: CheckpointSigner) -> None:
    """`SHA256SUMS`, then the manifest listing every file's SHA-256, then its signature."""
    files = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != SUMS
    )
    digests = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in files}
    (out / SUMS).write_text("".join(f"{d}  {n}\n" for n, d in digests.items()), "utf-8")
    digests[SUMS] = hashlib.sha256((out / SUMS).read_bytes()).hexdigest()
    body = json.dumps({**manifest, "files": dict(sorted(digests.items()))}, indent=2) + "\n"
    (out / MANIFEST).write_text(body, encoding="utf-8")
    signature = signing_key.sign(body.encode("utf-8")).hex()
    (out / MANIFEST_SIGNATURE).write_text(signature + "\n", encoding="ascii")

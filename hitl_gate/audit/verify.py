"""`hitl audit verify`: recompute the whole chain and every checkpoint, name the first break.

Every entry's hash and link is recomputed (`segments.scan_segment`); a large log is split at
checkpoint boundaries and checked by one process per CPU core. Checkpoints are read from the
database and from the files written beside it: a file whose checkpoint is missing from the
database, or that points past the end of the log, means the database was rolled back or its
tail deleted. With a witness folder (`witness.py`), every checkpoint published outside the
home must be in the database, identical: this is what catches a tail deleted together with its
checkpoints and files, or a history rewritten and re-signed with the real key. The lineage
check compares every row with the envelopes read from the chain itself, never with
`audit_log_index` (a cache; docs/audit.md, "Threat model").
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb

from hitl_gate.audit.chain import GENESIS_HASH, merkle_fanout
from hitl_gate.audit.events import (
    CHAIN_EVENTS,
    EVENT_SOURCES,
    chain_findings,
    load_chain_events,
)
from hitl_gate.audit.seal import CHECKPOINT_FIELDS, checkpoint_message
from hitl_gate.audit.segments import SegmentResult, scan_segment
from hitl_gate.audit.trust import KeySchedule, TrustAnchor, checkpoint_key_problem, key_schedule
from hitl_gate.audit.witness import (
    WITNESS_FILE,
    TsaCheck,
    checkpoint_stamp,
    compare_with_witness,
    imprint_only_note,
    read_witness,
    stamp_problems,
)

BATCH_ROWS = 1_000_000
PARALLEL_MIN_ENTRIES = 2_000_000  # below this, starting a process costs more than it saves


@dataclass(frozen=True)
class Finding:
    """One broken thing, anchored at a sequence number when it concerns an entry."""

    seq: int | None
    message: str


@dataclass
class VerifyReport:
    """The outcome of a verification: entries and checkpoints checked, problems, notes."""

    entries: int = 0
    checkpoints: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchor: TrustAnchor | None = None  # the pinned key checked against (None: self-consistency)
    schedule: KeySchedule | None = None  # the key valid where, from the anchor's hand-overs

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> Finding | None:
        anchored = [p for p in self.problems if p.seq is not None]
        return min(anchored, key=lambda p: cast(int, p.seq)) if anchored else None

    def summary(self) -> str:
        if not self.ok:
            verdict = f"BROKEN ({len(self.problems)} problems)"
        elif self.anchor is None:
            verdict = (
                "SELF-CONSISTENT ONLY (no trusted key pinned: checkpoints were checked against "
                "the keys they name, which whoever writes the home could replace; set "
                "HITL_AUDIT_TRUSTED_KEY, docs/key_custody.md)"
            )
        else:
            verdict = f"OK (signed by the trusted key of {self.anchor.source} or its hand-overs)"
        lines = [f"audit log: {self.entries} entries, {self.checkpoints} checkpoints: {verdict}"]
        first = self.first_broken
        if first is not None:
            lines.append(f"first broken entry: seq {first.seq}: {first.message}")
        lines += [f"  problem: {p.message}" for p in self.problems[:20]]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def verify_audit(
    con: duckdb.DuckDBPyConnection,
    checkpoint_dir: Path,
    public_key: str | TrustAnchor | None,
    *,
    lineage: bool = True,
    batch_rows: int = BATCH_ROWS,
    workers: int = 1,
    witness: Path | None = None,
    more_events: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
    tsa: TsaCheck | None = None,
) -> VerifyReport:
    """Check the chain, every checkpoint (database and files) and, optionally, the lineage.

    `workers` > 1 checks a large log in that many processes, split at checkpoints. Off by
    default: it only pays when a core is free, since the kernel shares CPU between sessions
    (autogroups), not processes; on a busy machine it measured 0.6-1.1x (BENCHMARKS.md).
    `witness` is the folder of the external witness file (`witness.py`): every checkpoint it
    saw must be in the database, identical, so a deleted tail or a re-signed history is caught.
    With `tsa` too, every RFC 3161 stamp beside it must time-stamp its checkpoint as the
    database holds it, and every stamp the witness recorded must still be there.
    `more_events` adds the envelopes of other chains to the lineage check's events (the folded
    per-run segments: `run_seal.load_segment_events`).
    """
    anchor = TrustAnchor(public_key, "the given key") if isinstance(public_key, str) else public_key
    report = VerifyReport(anchor=anchor)
    schedule = key_schedule(con, checkpoint_dir, anchor)
    report.schedule = schedule
    report.problems.extend(Finding(seq or None, message) for seq, message in schedule.problems)
    checkpoints = _load_checkpoints(con, checkpoint_dir, schedule, report)
    report.checkpoints = len(checkpoints)
    last_seq = _verify_chain(con, checkpoints, report, batch_rows, workers)
    report.entries = last_seq
    for cp in checkpoints:
        if cp["last_seq"] > last_seq:
            report.problems.append(
                Finding(
                    last_seq + 1,
                    f"log ends at seq {last_seq} but checkpoint {cp['last_seq']} (run "
                    f"{cp['run_id']}) was signed: the tail of the log was deleted",
                )
            )
    sealed_to = max((cp["last_seq"] for cp in checkpoints), default=0)
    if last_seq > sealed_to:
        report.notes.append(f"entries {sealed_to + 1}..{last_seq} are not covered by a checkpoint")
    if witness is not None:
        _verify_witness(checkpoints, last_seq, witness, report, tsa)
    if lineage:
        _verify_lineage(con, report, more_events)
    return report


def _verify_witness(
    checkpoints: list[dict[str, Any]],
    last_seq: int,
    folder: Path,
    report: VerifyReport,
    tsa: TsaCheck | None,
) -> None:
    """Compare the checkpoints (database and home files) with the external witness, and
    with `tsa` the RFC 3161 stamps beside it (`witness.stamp_problems`, as the segments'
    global checkpoints' are)."""
    read = read_witness(folder / WITNESS_FILE)
    if not read.exists:
        report.notes.append(
            f"no witness file at {folder / WITNESS_FILE}: checkpoints not compared with a witness"
        )
        return
    by_seq = {int(cp["last_seq"]): cp for cp in checkpoints}
    problems, notes = compare_with_witness(by_seq, last_seq, read)
    if tsa is not None:
        problems += stamp_problems(
            lambda seq: checkpoint_stamp(folder, seq), checkpoint_message, by_seq,
            read.checkpoints, tsa,
        )  # fmt: skip
        if not tsa.roots and any(folder.glob("[0-9]*.tsr")):
            notes.append(imprint_only_note("checkpoints'"))
    report.problems.extend(Finding(seq, message) for seq, message in problems)
    report.notes.extend(notes)


def _load_checkpoints(
    con: duckdb.DuckDBPyConnection, folder: Path, schedule: KeySchedule, report: VerifyReport
) -> list[dict[str, Any]]:
    """Union of database and file checkpoints, each signature checked, by `last_seq`."""
    rows = con.execute("SELECT * FROM audit_checkpoints ORDER BY last_seq").fetchall()
    names = [d[0] for d in con.description]
    in_db = {int(r[names.index("last_seq")]): dict(zip(names, r, strict=True)) for r in rows}
    on_disk: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("checkpoint-*.json")) if folder.exists() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            on_disk[int(record["last_seq"])] = record
        except (ValueError, KeyError) as exc:
            report.problems.append(Finding(None, f"{path}: unreadable checkpoint ({exc})"))
    for seq, record in on_disk.items():
        db = in_db.get(seq)
        if db is None:
            report.problems.append(
                Finding(seq, f"checkpoint file for seq {seq} has no database row (deleted)")
            )
        elif merkle_fanout(db) != merkle_fanout(record) or any(
            str(db[k]) != str(record.get(k)) for k in (*CHECKPOINT_FIELDS, "signature")
        ):
            report.problems.append(Finding(seq, f"checkpoint {seq}: file and database differ"))
    for seq in in_db.keys() - on_disk.keys():
        report.notes.append(f"checkpoint {seq} has no file yet (written by the next seal)")
    merged = {**in_db, **on_disk}
    checkpoints = [merged[s] for s in sorted(merged)]
    for cp in checkpoints:
        problem = checkpoint_key_problem(cp, schedule)
        if problem:
            report.problems.append(Finding(cp["last_seq"], problem))
    return checkpoints


def _verify_chain(
    con: duckdb.DuckDBPyConnection,
    checkpoints: list[dict[str, Any]],
    report: VerifyReport,
    batch_rows: int,
    workers: int,
) -> int:
    """Check every entry; return the last sequence number (0 when the log is empty).

    A large log on a read-only file is split at checkpoint boundaries and the segments are
    checked in parallel processes. Otherwise, or when any segment finds a row missing or out
    of order, the log is read in one pass: storage order first (no sort), then sorted by `seq`
    if needed, so the report names entries by their sequence numbers.
    """
    plan = _segment_plan(con, checkpoints, workers)
    if plan is not None:
        results = _scan_in_parallel(con, plan, checkpoints, batch_rows)
        if not any(r.out_of_place for r in results):
            for r in results:
                report.problems.extend(Finding(seq, message) for seq, message in r.problems)
            return results[-1].last_seq
    for ordered in (False, True):
        result = scan_segment(con, checkpoints, batch_rows, ordered=ordered)
        if ordered or not result.out_of_place:
            report.problems.extend(Finding(seq, message) for seq, message in result.problems)
            return result.last_seq
    return 0  # unreachable: the sorted pass always returns


@dataclass(frozen=True)
class _Segment:
    lo: int
    hi: int
    prev_hex: str  # stored hash of entry lo - 1


def _segment_plan(
    con: duckdb.DuckDBPyConnection, checkpoints: list[dict[str, Any]], workers: int
) -> tuple[str, list[_Segment]] | None:
    """The database path and up to `workers` segments cut at checkpoint ends, or None.

    None (one pass) when parallel is not worth it or not safe: few entries, an in-memory or
    writable database (a child cannot open it), sequence numbers that are not exactly
    1..count, or no checkpoint end near the cut points. A cut never falls inside a
    checkpoint's range, so each range's Merkle root is checked whole by one process.
    """
    if workers < 2:
        return None
    path, readonly = _row(
        con,
        "SELECT path, readonly FROM duckdb_databases() WHERE database_name = current_database()",
    )
    if not path or not readonly:
        return None
    count, low, high = _row(con, "SELECT count(*), min(seq), max(seq) FROM audit_log")
    if count < PARALLEL_MIN_ENTRIES or low != 1 or high != count:
        return None
    ranges = [(int(cp["first_seq"]), int(cp["last_seq"])) for cp in checkpoints]
    ends = [e for _, e in ranges if 0 < e < count and not any(a <= e < b for a, b in ranges)]
    if not ends:
        return None
    targets = [count * k / workers for k in range(1, workers)]
    cuts = sorted({min(ends, key=lambda e: abs(e - t)) for t in targets})
    segments = []
    for lo, hi in zip([0, *cuts], [*cuts, count], strict=True):
        prev = _row(con, "SELECT entry_hash FROM audit_log WHERE seq = ?", [lo])[0] if lo else None
        segments.append(_Segment(lo + 1, hi, prev or GENESIS_HASH))
    return str(path), segments


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple:
    return con.execute(sql, params or []).fetchall()[0]


def _scan_in_parallel(
    con: duckdb.DuckDBPyConnection,
    plan: tuple[str, list[_Segment]],
    checkpoints: list[dict[str, Any]],
    batch_rows: int,
) -> list[SegmentResult]:
    """The first segment in this process, each other one in a child process, in order.

    The joins are checked by construction: segment i+1 starts from the stored hash of the
    last entry of segment i, which segment i recomputes and compares.
    """
    database, segments = plan
    with tempfile.TemporaryDirectory(prefix="hitl-verify-") as scratch:
        children = []
        for number, segment in enumerate(segments[1:], start=1):
            job = Path(scratch) / f"segment-{number}.json"
            job.write_text(
                json.dumps(
                    {
                        "database": database, "checkpoints": checkpoints,
                        "batch_rows": batch_rows, "lo": segment.lo, "hi": segment.hi,
                        "prev_hex": segment.prev_hex,
                    },
                    default=str,
                ),
                encoding="utf-8",
            )  # fmt: skip
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hitl_gate.audit.segments", str(job)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        first = segments[0]
        results = [scan_segment(con, checkpoints, batch_rows, lo=first.lo, hi=first.hi)]
        for child in children:
            out, _ = child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"audit verify: a segment process failed ({child.returncode})")
            raw = json.loads(out)
            results.append(
                SegmentResult(
                    problems=[(int(seq), str(msg)) for seq, msg in raw["problems"]],
                    last_seq=int(raw["last_seq"]),
                    out_of_place=bool(raw["out_of_place"]),
                )
            )
    return results


def _verify_lineage(
    con: duckdb.DuckDBPyConnection,
    report: VerifyReport,
    more_events: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
) -> None:
    """Every lineage row against the chain itself (`events.chain_findings`), never the index.

    No message suggests sealing: a seal would log an edited row of a versioned table as its
    next version, and it refuses an edited insert-once row anyway.
    """
    load_chain_events(con)
    try:
        if more_events is not None:
            more_events(con)
        findings = chain_findings(con, EVENT_SOURCES)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {CHAIN_EVENTS}")
    report.problems.extend(Finding(None, message) for message in findings)

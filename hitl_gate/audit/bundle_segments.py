"""The per-run segments' part of a regulator bundle (`bundle.py`): rows a segment sealed.

With `HITL_AUDIT_SEGMENTS` on, a run's versioned rows (decisions, batches, outcomes...) are
sealed in a chain of the run's own and folded as a leaf under a signed global checkpoint
(`run_segments.py`). A bundle holding such a row ships, beside the single chain's ranges:

    segments/<segment id>/log/entries-<first>-<last>.tsv   whole checkpoint ranges of the
    segments/<segment id>/checkpoints/checkpoint-<last>.json   segment (folded ones only)
    global/leaves.json          every leaf (one per folded segment checkpoint), in order
    global/checkpoints.json     every signed global checkpoint, in order

so `verify_bundle.py` checks each segment range as it checks a single-chain range, finds its
checkpoint among the leaves, recomputes the global Merkle tree over the leaves and each global
checkpoint's link and signature by the key the hand-overs give for it. The row's entry is
found through `audit_segment_log`, which the export's session (`run_seal.reading_session`)
reads from the folded segment files in place; what ships is read from the segment file itself,
and the export checks its own bundle, so a forged entry fails the export instead of shipping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from hitl_gate.audit.run_segments import Segments

SINGLE_CHAIN = ""  # the chain key of the single chain (a segment's is its id)
SEGMENT_EVENTS = "bundle_segment_events"
LEAVES_FILE = "global/leaves.json"
GLOBALS_FILE = "global/checkpoints.json"
# Joined to a lineage row `s` (and its event type): the folded segment entry logging it.
SEGMENT_EVENTS_JOIN = (
    f"LEFT JOIN {SEGMENT_EVENTS} g ON g.event_type = $event_type "
    "AND g.entity_key = s.entity_key AND g.content_digest = s.content_digest"
)
NO_SEGMENT_JOIN = "LEFT JOIN (SELECT NULL::VARCHAR AS segment_id, NULL::BIGINT AS seq) g ON false"

WriteLog = Callable[..., tuple[list[dict[str, Any]], set[str], int]]


class BundleError(RuntimeError):
    """The bundle cannot be written (bad target, or the database does not back the rows)."""


def segment_events(con: duckdb.DuckDBPyConnection) -> bool:
    """Unpack the folded segment entries' envelopes into the temporary table
    `SEGMENT_EVENTS` (one entry per event, the first segment's); False when there are none."""
    (exists,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' "
        "AND table_name = 'audit_segment_log'"
    ).fetchall()[0]
    if not exists:
        return False
    (copied,) = con.execute("SELECT EXISTS (SELECT 1 FROM audit_segment_log)").fetchall()[0]
    if not copied:
        _require_no_folded_segments(con)
        return False
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {SEGMENT_EVENTS} AS "
        "SELECT DISTINCT ON (event_type, entity_key, content_digest) * FROM ("
        "SELECT segment_id, seq, e[1] AS event_type, e[2] AS entity_key, e[3] AS content_digest "
        "FROM (SELECT segment_id, seq, json_extract_string(substr(entry, 66), "
        "['$.type', '$.key', '$.digest']) AS e FROM audit_segment_log)) "
        "ORDER BY event_type, entity_key, content_digest, segment_id, seq"
    )
    return True


def _require_no_folded_segments(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a session that lists no segment entry although segments were folded: such a
    session (a plain connection) does not read the segment files, so every row they back
    would look unsealed and the refusal would name the wrong cause."""
    (leaves,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'audit_segment_leaves'"
    ).fetchall()[0]
    if leaves and con.execute("SELECT count(*) FROM audit_segment_leaves").fetchall()[0][0]:
        raise BundleError(
            "this session reads none of the folded segments' entries: open it with "
            "run_seal.reading_session (as `hitl audit export` does)"
        )


def write_segment_logs(
    con: duckdb.DuckDBPyConnection,
    segments: Segments,
    seqs: dict[str, set[int]],
    out: Path,
    write_log: WriteLog,
) -> tuple[list[dict[str, Any]], set[str], int]:
    """Each segment's folded checkpoint ranges holding one of its `seqs` (by `write_log`,
    the single chain's writer, on the segment's own database), then the global leaves and
    checkpoints. Returns the ranges, the keys that signed and the entries written."""
    folded = dict(
        con.execute(
            "SELECT segment_id, max(last_seq) FROM audit_segment_leaves GROUP BY ALL"
        ).fetchall()
    )
    ranges: list[dict[str, Any]] = []
    keys: set[str] = set()
    total = 0
    for segment in sorted(seqs):
        if segment not in folded or not segments.database(segment).is_file():
            raise BundleError(
                f"segment {segment}: not folded or its file is missing; `hitl audit verify` "
                "names what is wrong"
            )
        with segments.open(segment, read_only=True) as seg:
            more, signed, written = write_log(seg, seqs[segment], out, segment, folded[segment])
        ranges, keys, total = ranges + more, keys | signed, total + written
    keys |= _write_global(con, out)
    return ranges, keys, total


def _write_global(con: duckdb.DuckDBPyConnection, out: Path) -> set[str]:
    """Every leaf and every global checkpoint (small: one leaf per folded segment seal)."""
    (out / "global").mkdir()
    for name, sql in (
        (LEAVES_FILE, "SELECT * FROM audit_segment_leaves ORDER BY leaf_seq"),
        (GLOBALS_FILE, "SELECT * FROM audit_global_checkpoints ORDER BY global_seq"),
    ):
        rows = con.execute(sql).fetchall()
        names = [d[0] for d in con.description]
        records = [dict(zip(names, row, strict=True)) for row in rows]
        (out / name).write_text(json.dumps(records, indent=2, default=str) + "\n", "utf-8")
        if name == GLOBALS_FILE:
            return {str(r["public_key"]) for r in records}
    return set()  # unreachable: the global checkpoints are written last

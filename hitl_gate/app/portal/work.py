"""A reviewer's work as the portal shows it: their queue, and one case of it by opaque id.

Everything is read from the same tables and files the file round trip uses: the current
assignment (`review_assignments`), the batch members, the batch's signed manifest and its
exported cases file (decrypted with the pipeline's age key when the domain encrypts batches),
so a case page shows exactly the row the export gave that person, masked for their queue's
role by `review/export/masking.py`. Case pages are addressed by an opaque reference (an HMAC of
domain, batch and case under the review key), never by the application id, which can be a
customer's reference number.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from hitl_gate.review.assignments import FIRST_OPINION, SECOND_OPINION
from hitl_gate.review.export.batches import CSV_NAME, XLSX_NAME
from hitl_gate.review.export.sealing import AGE_SUFFIX, pipeline_identity
from hitl_gate.review.manifest import batch_folder, load_manifest

OVERDUE, DUE_SOON, ON_TIME = "overdue", "due soon", "on time"

# The batches whose current assignee (highest seq) is the person, with their open cases: no
# opinion of theirs yet, not in a closed batch, and (outside escalation batches) not final.
_QUEUE_SQL = """
WITH current AS (
    SELECT batch_id, arg_max(assignee_id, seq) AS assignee_id,
           arg_max(opinion_slot, seq) AS opinion_slot
    FROM review_assignments GROUP BY batch_id
)
SELECT m.domain, m.batch_id, m.queue, m.case_id, m.due_at, m.escalation, c.opinion_slot,
       d.review_priority
FROM current c
JOIN review_batch_members m ON m.batch_id = c.batch_id
LEFT JOIN decisions d ON d.domain = m.domain AND d.case_id = m.case_id
WHERE c.assignee_id = $person
  AND m.batch_id NOT IN (SELECT batch_id FROM review_batch_closures)
  AND NOT EXISTS (
      SELECT 1 FROM verdict_opinions o
      WHERE o.domain = m.domain AND o.case_id = m.case_id AND o.reviewer_id = $person)
  AND (m.escalation OR NOT EXISTS (
      SELECT 1 FROM verdicts v WHERE v.domain = m.domain AND v.case_id = m.case_id))
ORDER BY m.due_at, d.review_priority NULLS LAST, m.batch_id, m.case_id
"""


@dataclass(frozen=True)
class QueueItem:
    """One open case of the person's queue."""

    ref: str
    domain: str
    batch_id: str
    queue: str
    case_id: str
    due_at: datetime
    escalation: bool
    opinion_slot: int
    priority: int | None
    sla: str


def case_ref(key: bytes, domain: str, batch_id: str, case_id: str) -> str:
    """The opaque id of a case in a batch (stable, unguessable without the review key)."""
    message = "\0".join(("portal-case", domain, batch_id, case_id)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def sla_state(due_at: datetime, now: datetime, due_soon: timedelta) -> str:
    if now >= due_at:
        return OVERDUE
    return DUE_SOON if due_at - now <= due_soon else ON_TIME


def my_queue(
    con: duckdb.DuckDBPyConnection, person_id: str, key: bytes, now: datetime, due_soon: timedelta
) -> list[QueueItem]:
    """The person's open cases, soonest due first."""
    rows = con.execute(_QUEUE_SQL, {"person": person_id}).fetchall()
    return [
        QueueItem(
            ref=case_ref(key, domain, batch, case),
            domain=domain,
            batch_id=batch,
            queue=queue,
            case_id=case,
            due_at=due,
            escalation=bool(escalation),
            opinion_slot=int(slot),
            priority=priority,
            sla=sla_state(due, now, due_soon),
        )
        for domain, batch, queue, case, due, escalation, slot, priority in rows
    ]


def find_case(items: list[QueueItem], ref: str) -> QueueItem | None:
    """The person's case with opaque id `ref` (None: not theirs, or not open)."""
    for item in items:
        if hmac.compare_digest(item.ref, ref):
            return item
    return None


@dataclass(frozen=True)
class BatchFiles:
    """An assigned batch's folder, its verified manifest and its exported cases table."""

    folder: Path
    manifest: dict[str, Any]
    header: list[str]
    rows: dict[str, list[str]]  # case id -> the exported CSV row, cell texts as written

    def row_of(self, case_id: str) -> dict[str, str]:
        return dict(zip(self.header, self.rows[case_id], strict=True))


def batch_bytes(folder: Path, name: str, secrets_dir: Path) -> bytes:
    """The plaintext of an exported batch file (decrypted with the pipeline's key if sealed)."""
    plain = folder / name
    if plain.is_file():
        return plain.read_bytes()
    import pyrage  # type: ignore[import-untyped]

    sealed = folder / (name + AGE_SUFFIX)
    return bytes(pyrage.decrypt(sealed.read_bytes(), [pipeline_identity(secrets_dir)]))


def read_batch(
    batches_dir: Path, batch_id: str, assignee_id: str, key: bytes, secrets_dir: Path
) -> BatchFiles:
    """The batch as exported to its assignee, its manifest verified with the review key."""
    folder = batch_folder(batches_dir, batch_id, assignee_id)
    if not folder.is_dir():
        folder = batch_folder(batches_dir, batch_id)
    manifest = load_manifest(folder, key)
    text = batch_bytes(folder, CSV_NAME, secrets_dir).decode("utf-8")
    lines = list(csv.reader(io.StringIO(text)))
    header = lines[0]
    where = header.index(str(manifest["case_id_column"]))
    return BatchFiles(folder, manifest, header, {row[where]: row for row in lines[1:]})


def download_name(folder: Path) -> tuple[Path, str]:
    """The workbook to download (sealed to the assignee when the export sealed it)."""
    sealed = folder / (XLSX_NAME + AGE_SUFFIX)
    return (sealed, sealed.name) if sealed.is_file() else (folder / XLSX_NAME, XLSX_NAME)


def is_blind(item: QueueItem, manifest: dict[str, Any]) -> bool:
    """A four-eyes opinion is given blind: neither slot sees the other's opinion."""
    return (
        item.opinion_slot in (FIRST_OPINION, SECOND_OPINION)
        or item.case_id in set(manifest.get("four_eyes_cases", []))
        and not item.escalation
    )

"""A labelled stand-in reviewer, so demos and end-to-end tests can close the review loop.

It edits the batch workbook exactly as a person would (answer cells only, same file format) and
signs the returned file with the assignee's demo key (`<home>/demo-keys`, made by
`app.demo_identities`), as a reviewer does with `hitl review sign`; intake then checks that
signature like any other, which makes it a faithful test of the round trip. Its rationale says
DEMO on every row so its verdicts can never be mistaken for a human's in the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
from openpyxl import load_workbook

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity.signatures import VERDICTS, sign_file
from hitl_gate.review.assignments import current_assignee
from hitl_gate.review.export.batches import OTHER_REASON, REASONS_COLUMN, XLSX_NAME
from hitl_gate.review.export.workbook import CASES_SHEET
from hitl_gate.review.manifest import MANIFEST_NAME

Decide = Callable[[dict], tuple[str, str, str]]
DEMO_DECLINE_BANDS = ("D", "E")


def _first_code(reasons: object, codes: list[str]) -> str:
    """The first model reason code shown in the 'reasons' column ('R03: text [...]', a line
    each)."""
    for part in str(reasons or "").replace(";", "\n").splitlines():
        code = part.split(":", 1)[0].strip()
        if code in codes and code != OTHER_REASON:
            return code
    return OTHER_REASON


def default_decision(codes: list[str]) -> Decide:
    """Decline risk bands D and E with the model's first reason, approve the rest."""

    def decide(row: dict) -> tuple[str, str, str]:
        band = str(row.get("risk_band") or "")
        if band in DEMO_DECLINE_BANDS:
            return (
                "decline",
                _first_code(row.get(REASONS_COLUMN), codes),
                f"DEMO reviewer (automated, not a person): declined, risk band {band}.",
            )
        return (
            "approve",
            "",
            f"DEMO reviewer (automated, not a person): approved, risk band {band or '?'}.",
        )

    return decide


def fill_demo_verdicts(
    batch_folder: Path,
    out_path: Path,
    *,
    reviewer_id: str = "demo-reviewer",
    decide: Decide | None = None,
    key_path: Path | None = None,
) -> Path:
    """Fill every case row of the batch's workbook and save it to `out_path` (XLSX); with
    `key_path`, also write its detached signature `out_path.sig` with that key."""
    if decide is None:
        manifest = json.loads((batch_folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        decide = default_decision(list(manifest.get("reason_codes", [])))
    workbook = load_workbook(batch_folder / XLSX_NAME)
    sheet = workbook[CASES_SHEET]
    header = [cell.value for cell in sheet[1]]
    column_of = {name: index for index, name in enumerate(header, start=1)}
    for row_index in range(2, sheet.max_row + 1):
        row = {name: sheet.cell(row_index, col).value for name, col in column_of.items()}
        if not row.get("batch_id"):
            continue
        verdict, reason_code, rationale = decide(row)
        answers = {
            "verdict": verdict,
            "verdict_reason_code": reason_code or None,
            "rationale": rationale,
            "reviewer_id": reviewer_id,
        }
        for name, value in answers.items():
            sheet.cell(row_index, column_of[name]).value = value
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(out_path)
    if key_path is not None:
        sign_file(out_path, key_path, VERDICTS)
    return out_path


def assign_if_unassigned(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, batch_id: str, queue: str
) -> None:
    """Bridge for exports that do not yet assign (issue 17.3 lands the per-person export): give
    an unassigned batch to the first demo person holding its queue's role, as the pipeline's
    seq-1 assignment. A batch already assigned is left as it is."""
    from datetime import UTC, datetime

    from hitl_gate.identity.store import load_registry
    from hitl_gate.review.settings import review_settings

    if current_assignee(con, batch_id) is not None:
        return
    settings = review_settings(domain)
    role = settings.queue(queue, domain).role if settings else queue
    now = datetime.now(UTC)
    holders = [
        p.person_id
        for p in load_registry(con).holders(domain.name, role, now)
        if p.person_id.startswith("demo-")
    ]
    if not holders:
        raise ValueError(f"no demo person holds {role} in {domain.name} to answer {batch_id}")
    con.execute(
        "INSERT INTO review_assignments (batch_id, seq, domain, queue, assignee_id, "
        "opinion_slot, assigned_by, recorded_at) VALUES (?, 1, ?, ?, ?, 0, 'pipeline', ?)",
        [batch_id, domain.name, queue, holders[0], now],
    )


def answer_as_assignee(
    con: duckdb.DuckDBPyConnection,
    paths: HitlPaths,
    batch_id: str,
    batch_folder: Path,
    out_path: Path,
    decide: Decide | None = None,
) -> tuple[Path, str]:
    """Fill the batch as its current assignee and sign it with that person's demo key.

    Only a demo person has a key under the home; a batch assigned to anyone else is refused
    here (the demo never signs for a real person).
    """
    from hitl_gate.app.demo_identities import DEMO_KEYS_FOLDER

    assignment = current_assignee(con, batch_id)
    if assignment is None:
        raise ValueError(f"batch {batch_id} has no assignee: nobody can sign its return")
    key = paths.home / DEMO_KEYS_FOLDER / f"{assignment.assignee_id}_ed25519"
    if not assignment.assignee_id.startswith("demo-") or not key.is_file():
        raise ValueError(
            f"batch {batch_id} is assigned to {assignment.assignee_id}, not a demo person"
        )
    returned = fill_demo_verdicts(
        batch_folder,
        out_path,
        reviewer_id=assignment.assignee_id,
        decide=decide,
        key_path=key,
    )
    return returned, assignment.assignee_id

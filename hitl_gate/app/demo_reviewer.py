"""A labelled stand-in reviewer, so demos and end-to-end tests can close the review loop.

It edits the batch workbook exactly as a person would (answer cells only, same file format),
which makes it a faithful test of the round trip. Its rationale says DEMO on every row so its
verdicts can never be mistaken for a human's in the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from openpyxl import load_workbook

from hitl_gate.review.export.batches import OTHER_REASON, REASONS_COLUMN, XLSX_NAME
from hitl_gate.review.export.workbook import CASES_SHEET
from hitl_gate.review.manifest import MANIFEST_NAME

Decide = Callable[[dict], tuple[str, str, str]]
DEMO_DECLINE_BANDS = ("D", "E")


def _first_code(reasons: object, codes: list[str]) -> str:
    """The first model reason code shown in the 'reasons' column ('R03: text; ...')."""
    for part in str(reasons or "").split(";"):
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
) -> Path:
    """Fill every case row of the batch's workbook and save it to `out_path` (XLSX)."""
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
    return out_path

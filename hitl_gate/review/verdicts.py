"""The one gate for returned verdict files: every check a returned row must pass, in one place.

A returned file is untrusted input from outside the pipeline. Problems with the whole file
(unreadable, wrong columns, unknown batch, manifest not signed by us) set `error`; problems with
one row reject that row only, with a message naming file, row and column, so a reviewer can
fix it and return the file again. Nothing here raises on bad input.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl import load_workbook

from hitl_gate.review.canonical import cell_text, row_digest
from hitl_gate.review.export import BATCH_COLUMN, VERDICT_COLUMNS
from hitl_gate.review.manifest import ManifestError, batch_folder, load_manifest
from hitl_gate.review.settings import ReviewSettings
from hitl_gate.review.workbook import CASES_SHEET

Row = dict[str, Any]
# Text starting with these is run as a formula by spreadsheets (CSV injection, OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class Formula(str):
    """The text of an XLSX cell that holds a formula rather than a value."""


def neutralise(text: str) -> str:
    """Free text that a spreadsheet would run as a formula, prefixed with an apostrophe."""
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


@dataclass(frozen=True)
class VerdictRules:
    """What the validator needs beyond the manifest: who may review, the clock, closed batches.

    Without `settings` (a domain with no review settings file) any non-blank reviewer id is
    accepted and batches never expire; everything else is checked the same way.
    """

    settings: ReviewSettings | None = None
    now: datetime | None = None
    closed_batches: Mapping[str, str] = field(default_factory=dict)

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class VerdictFileResult:
    """The outcome of validating one returned file; `not_reviewed` counts blank-verdict rows."""

    file_path: Path
    file_sha256: str
    batch_id: str | None
    accepted: pl.DataFrame
    rejected: pl.DataFrame
    error: str | None
    not_reviewed: int = 0


class _FileError(ValueError):
    """A problem with the whole file; its message becomes `VerdictFileResult.error`."""

    def __init__(self, message: str, batch_id: str | None = None) -> None:
        super().__init__(message)
        self.batch_id = batch_id


_MANIFEST_KEYS = ("case_id_column", "case_digests", "digest_columns", "reason_codes")


def _accepted_schema(case_id: str) -> dict[str, pl.DataType]:
    names = [BATCH_COLUMN, case_id, *VERDICT_COLUMNS, "file_sha256", "suggested_action"]
    return {
        **{name: pl.String() for name in names},
        "row_number": pl.Int64(),
        "four_eyes": pl.Boolean(),
        "is_override": pl.Boolean(),
    }


def _rejected_schema(case_id: str) -> dict[str, pl.DataType]:
    names = [case_id, "column", "value", "message"]
    return {"row_number": pl.Int64(), **{name: pl.String() for name in names}}


def _read_xlsx(path: Path) -> tuple[list[str], list[tuple[int, Row]]]:
    workbook = load_workbook(path, read_only=True)  # formulas as text, to refuse them
    try:
        if CASES_SHEET not in workbook.sheetnames:
            raise _FileError(f"{path.name}: no '{CASES_SHEET}' sheet")
        lines = workbook[CASES_SHEET].iter_rows()
        header = [cell_text(cell.value) for cell in next(lines, ())]
        rows = [
            (number, dict(zip(header, map(_cell_value, cells), strict=False)))
            for number, cells in enumerate(lines, 2)
        ]
    finally:
        workbook.close()
    return header, rows


def _cell_value(cell: Any) -> Any:
    """A cell's value; a formula is marked so it can be refused rather than evaluated."""
    value = getattr(cell, "value", None)
    if getattr(cell, "data_type", None) == "f":
        return Formula(str(value))
    return value


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, Row]]]:
    # utf-8-sig: Excel adds a byte-order mark when it saves CSV as UTF-8.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = csv.reader(handle)
        header = [name.strip() for name in next(lines, [])]
        rows = [
            (number, dict(zip(header, values, strict=False)))
            for number, values in enumerate(lines, 2)
        ]
    return header, rows


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, Row]]]:
    """Header and (spreadsheet row number, values) pairs; wholly blank rows are dropped."""
    readers = {".xlsx": _read_xlsx, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise _FileError(f"{path.name}: unsupported file type '{path.suffix}' (use .xlsx or .csv)")
    try:
        header, rows = reader(path)
    except _FileError:
        raise
    except Exception as exc:  # any parser failure is the file's problem, not ours
        raise _FileError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from exc
    return header, [(n, row) for n, row in rows if any(cell_text(v) for v in row.values())]


def _file_batch(path: Path, rows: list[tuple[int, Row]]) -> str:
    """The batch the file belongs to: the batch id most of its rows carry."""
    counts = Counter(cell_text(row.get(BATCH_COLUMN)) for _, row in rows)
    counts.pop("", None)
    ranked = counts.most_common(2)
    if not ranked:
        raise _FileError(f"{path.name}: no batch_id in any row")
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        raise _FileError(f"{path.name}: rows are split evenly between batches {sorted(counts)}")
    return ranked[0][0]


def _row_problems(
    row: Row,
    manifest: dict[str, Any],
    batch_id: str,
    case_id: str,
    allowed: set[str],
    duplicated: set[str],
    settings: ReviewSettings | None,
) -> list[tuple[str, str, str]]:
    """(column, value, problem) for everything wrong with one reviewed row."""
    problems: list[tuple[str, str, str]] = [
        (name, cell_text(row.get(name)), "formulas are not accepted in answer cells; type a value")
        for name in VERDICT_COLUMNS
        if isinstance(row.get(name), Formula)
    ]
    cid = cell_text(row.get(case_id))
    row_batch = cell_text(row.get(BATCH_COLUMN))
    if row_batch != batch_id:
        problems.append(
            (
                BATCH_COLUMN,
                row_batch,
                f"row is from batch '{row_batch}', the file is batch '{batch_id}'",
            )
        )
    if not cid:
        problems.append((case_id, cid, "case id is blank"))
    elif cid not in manifest["case_digests"]:
        problems.append((case_id, cid, f"case is not part of batch '{batch_id}'"))
    elif row_digest(row, manifest["digest_columns"]) != manifest["case_digests"][cid]:
        problems.append(
            (
                "context",
                "",
                "case context differs from what was exported (a locked column was edited)",
            )
        )
    if cid in duplicated:
        problems.append((case_id, cid, "case appears more than once in the file"))
    verdict = cell_text(row.get("verdict"))
    if verdict.lower() not in allowed:
        problems.append(("verdict", verdict, f"verdict must be one of {sorted(allowed)}"))
    reason = cell_text(row.get("verdict_reason_code"))
    if reason and reason.upper() not in manifest["reason_codes"]:
        problems.append(("verdict_reason_code", reason, "unknown reason code"))
    reviewer = cell_text(row.get("reviewer_id"))
    if not reviewer:
        problems.append(("reviewer_id", "", "reviewer_id is required for a verdict"))
    elif settings is not None:
        refused = settings.may_work(reviewer, manifest["queue"], manifest.get("role"))
        if refused:
            problems.append(("reviewer_id", reviewer, refused))
    if not cell_text(row.get("rationale")) and _needs_rationale(verdict.lower(), cid, manifest):
        problems.append(
            (
                "rationale",
                "",
                f"a rationale is required for a '{verdict.lower()}' verdict"
                + _override_note(verdict.lower(), cid, manifest),
            )
        )
    return problems


def _needs_rationale(verdict: str, cid: str, manifest: dict[str, Any]) -> bool:
    """Declines (as configured) and overrides of the suggested action need a rationale."""
    if verdict in manifest.get("rationale_required_for", []):
        return True
    suggested = manifest.get("suggested_actions", {}).get(cid)
    return suggested is not None and suggested != verdict


def _override_note(verdict: str, cid: str, manifest: dict[str, Any]) -> str:
    suggested = manifest.get("suggested_actions", {}).get(cid)
    if suggested is not None and suggested != verdict:
        return f" that overrides the suggested '{suggested}'"
    return ""


def _batch_open(path: Path, batch_id: str, manifest: dict[str, Any], rules: VerdictRules) -> None:
    """Refuse a file for a batch that is closed or past its expiry (due time plus grace)."""
    if batch_id in rules.closed_batches:
        raise _FileError(
            f"{path.name}: batch '{batch_id}' is closed ({rules.closed_batches[batch_id]}); "
            "verdicts for it are no longer accepted",
            batch_id,
        )
    expires = manifest.get("expires_at")
    if expires and rules.clock() > datetime.fromisoformat(expires):
        raise _FileError(
            f"{path.name}: batch '{batch_id}' expired at {expires} (due time plus grace); "
            "its cases have been escalated",
            batch_id,
        )


def _validate(
    path: Path,
    file_sha: str,
    *,
    batches_dir: Path,
    key: bytes,
    allowed: set[str],
    case_id: str,
    rules: VerdictRules,
) -> tuple[str, list[Row], list[Row], int]:
    header, rows = _read_table(path)
    missing = [n for n in (BATCH_COLUMN, case_id, *VERDICT_COLUMNS) if n not in header]
    if missing:
        raise _FileError(f"{path.name}: missing columns {missing}")
    batch_id = _file_batch(path, rows)
    try:
        manifest = load_manifest(batch_folder(batches_dir, batch_id), key)
    except ManifestError as exc:
        raise _FileError(str(exc), batch_id) from exc
    if any(name not in manifest for name in _MANIFEST_KEYS):
        raise _FileError(f"batch '{batch_id}': manifest lacks {list(_MANIFEST_KEYS)}", batch_id)
    if manifest["case_id_column"] != case_id:
        raise _FileError(
            f"{path.name}: batch '{batch_id}' is keyed by "
            f"'{manifest['case_id_column']}', not '{case_id}'",
            batch_id,
        )
    missing = [n for n in manifest["digest_columns"] if n not in header]
    if missing:
        raise _FileError(f"{path.name}: missing columns {missing}", batch_id)
    _batch_open(path, batch_id, manifest, rules)
    four_eyes = set(manifest.get("four_eyes_cases", []))
    suggested = manifest.get("suggested_actions", {})

    seen = Counter(cell_text(row.get(case_id)) for _, row in rows)
    duplicated = {cid for cid, count in seen.items() if cid and count > 1}
    accepted: list[Row] = []
    rejected: list[Row] = []
    not_reviewed = 0
    for number, row in rows:
        if not cell_text(row.get("verdict")):
            not_reviewed += 1
            continue
        cid = cell_text(row.get(case_id))
        problems = _row_problems(
            row, manifest, batch_id, case_id, allowed, duplicated, rules.settings
        )
        rejected += [
            {
                "row_number": number,
                case_id: cid,
                "column": column,
                "value": value,
                "message": f"{path.name} row {number}, column '{column}': {problem}",
            }
            for column, value, problem in problems
        ]
        if not problems:
            verdict = cell_text(row.get("verdict")).lower()
            accepted.append(
                {
                    BATCH_COLUMN: batch_id,
                    case_id: cid,
                    "verdict": verdict,
                    "verdict_reason_code": cell_text(row.get("verdict_reason_code")).upper(),
                    "rationale": neutralise(cell_text(row.get("rationale"))),
                    "reviewer_id": cell_text(row.get("reviewer_id")),
                    "file_sha256": file_sha,
                    "row_number": number,
                    "suggested_action": suggested.get(cid),
                    "four_eyes": cid in four_eyes,
                    "is_override": suggested.get(cid) not in (None, verdict),
                }
            )
    return batch_id, accepted, rejected, not_reviewed


def validate_verdict_file(
    path: Path,
    *,
    batches_dir: Path,
    key: bytes,
    allowed_verdicts: Sequence[str],
    case_id: str,
    rules: VerdictRules | None = None,
) -> VerdictFileResult:
    """Check a returned XLSX or CSV against its signed batch; never raises on bad input."""
    empty_accepted = pl.DataFrame(schema=_accepted_schema(case_id))
    empty_rejected = pl.DataFrame(schema=_rejected_schema(case_id))
    try:
        file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return VerdictFileResult(
            path, "", None, empty_accepted, empty_rejected, f"{path.name}: cannot read file ({exc})"
        )
    allowed = {verdict.strip().lower() for verdict in allowed_verdicts}
    try:
        batch_id, accepted, rejected, not_reviewed = _validate(
            path,
            file_sha,
            batches_dir=batches_dir,
            key=key,
            allowed=allowed,
            case_id=case_id,
            rules=rules or VerdictRules(),
        )
    except _FileError as exc:
        return VerdictFileResult(
            path, file_sha, exc.batch_id, empty_accepted, empty_rejected, str(exc)
        )
    return VerdictFileResult(
        file_path=path,
        file_sha256=file_sha,
        batch_id=batch_id,
        accepted=pl.DataFrame(accepted, schema=_accepted_schema(case_id))
        if accepted
        else empty_accepted,
        rejected=pl.DataFrame(rejected, schema=_rejected_schema(case_id))
        if rejected
        else empty_rejected,
        error=None,
        not_reviewed=not_reviewed,
    )

"""The one gate for returned verdict files: every check a returned row must pass, in one place.

A returned file is untrusted input from outside the pipeline. Problems with the whole file
(unreadable, wrong columns, unknown batch, manifest not signed by us) set `error`; problems with
one row reject that row only, with a message naming file, row and column, so a reviewer can
fix it and return the file again. Nothing here raises on bad input.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl import load_workbook

from hitl_gate.review.canonical import cell_text, context_digests, sheet_text
from hitl_gate.review.export.batches import BATCH_COLUMN, VERDICT_COLUMNS
from hitl_gate.review.export.workbook import CASES_SHEET
from hitl_gate.review.manifest import ManifestError, batch_folder, load_manifest
from hitl_gate.review.settings import ReviewSettings

# Text starting with these is run as a formula by spreadsheets (CSV injection, OWASP): an
# accepted rationale that starts with one is stored with a leading apostrophe.
_FORMULA_START = r"^[=+\-@\t\r]"


@dataclass(frozen=True)
class VerdictRules:
    """What the validator needs beyond the manifest: the signer, the clock, closed batches.

    `signer` is the person whose verified signature the file carries (`intake.signed`): every
    accepted row is recorded as theirs, and a row whose typed `reviewer_id` names someone else
    is refused. Without a signer (validation alone, as in tests of the format) the typed id is
    only required to be present; intake never validates without one.
    """

    settings: ReviewSettings | None = None
    now: datetime | None = None
    closed_batches: Mapping[str, str] = field(default_factory=dict)
    # batch -> case -> reason: cases escalated out of a batch are closed there.
    moved_cases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    signer: str | None = None
    max_rows: int | None = None
    # batch -> how many of its cases have an escalation (said truthfully when a batch expired).
    escalated: Mapping[str, int] = field(default_factory=dict)

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
    queue: str | None = None  # the batch's queue, from its signed manifest


class _FileError(ValueError):
    """A problem with the whole file; its message becomes `VerdictFileResult.error`."""

    def __init__(self, message: str, batch_id: str | None = None) -> None:
        super().__init__(message)
        self.batch_id = batch_id


_MANIFEST_KEYS = ("case_id_column", "case_digests", "digest_columns", "reason_codes")


def _accepted_schema(case_id: str) -> pl.Schema:
    names = [BATCH_COLUMN, case_id, *VERDICT_COLUMNS, "file_sha256", "suggested_action"]
    return pl.Schema(
        {
            **{name: pl.String() for name in names},
            "row_number": pl.Int64(),
            "four_eyes": pl.Boolean(),
            "is_override": pl.Boolean(),
        }
    )


def _rejected_schema(case_id: str) -> pl.Schema:
    names = [case_id, "column", "value", "message"]
    return pl.Schema({"row_number": pl.Int64(), **{name: pl.String() for name in names}})


@dataclass(frozen=True)
class _Source:
    """The bytes being validated (exactly those whose hash and signature were checked)."""

    name: str
    suffix: str
    data: bytes


ROW_NUMBER = "\0row"  # internal columns cannot clash with a header a reviewer typed
_FORMULA = "\0formula:"


def _too_many(source: _Source, max_rows: int | None) -> _FileError:
    return _FileError(
        f"{source.name}: more than {max_rows:,} rows, the cap for a verdict file; "
        "nothing in it was taken in"
    )


def _read_xlsx(source: _Source, max_rows: int | None) -> pl.DataFrame:
    # formulas as text, to refuse them
    workbook = load_workbook(io.BytesIO(source.data), read_only=True)
    try:
        if CASES_SHEET not in workbook.sheetnames:
            raise _FileError(f"{source.name}: no '{CASES_SHEET}' sheet")
        lines = workbook[CASES_SHEET].iter_rows()
        header = [cell_text(cell.value) for cell in next(lines, ())]
        columns: list[list[str | None]] = [[] for _ in header]
        formulas: dict[str, list[bool]] = {n: [] for n in VERDICT_COLUMNS if n in header}
        where = {n: header.index(n) for n in formulas}
        width = len(header)
        for count, cells in enumerate(lines, start=1):
            if max_rows is not None and count > max_rows:
                raise _too_many(source, max_rows)
            cells = (tuple(cells) + (None,) * width)[:width]
            for column, cell in zip(columns, cells, strict=True):
                column.append(sheet_text(getattr(cell, "value", None)))
            for name, flags in formulas.items():
                flags.append(getattr(cells[where[name]], "data_type", None) == "f")
    finally:
        workbook.close()
    # A repeated header name keeps its last column, as a spreadsheet lookup by name would.
    data = {
        name: pl.Series(values, dtype=pl.String)
        for name, values in zip(header, columns, strict=True)
    }
    frame = pl.DataFrame(data, schema=dict.fromkeys(data, pl.String))
    return frame.with_columns(
        pl.Series(f"{_FORMULA}{name}", flags, dtype=pl.Boolean) for name, flags in formulas.items()
    )


def _read_csv(source: _Source, max_rows: int | None) -> pl.DataFrame:
    data = source.data
    if max_rows is not None and data.count(b"\n") > max_rows + 1 and data.count(b"\r") == 0:
        raise _too_many(source, max_rows)  # cheap early refusal; parsed height is checked too
    data.decode("utf-8")  # refuse other encodings clearly; Polars would replace bad bytes
    # Excel adds a byte-order mark when it saves CSV as UTF-8; Polars drops it.
    if not data.strip(b"\xef\xbb\xbf \t\r\n"):
        return pl.DataFrame()
    frame = pl.read_csv(data, infer_schema=False, truncate_ragged_lines=True)
    if max_rows is not None and frame.height > max_rows:
        raise _too_many(source, max_rows)
    return frame.rename({name: name.strip() for name in frame.columns})


def _read_table(source: _Source, max_rows: int | None) -> pl.DataFrame:
    """All cells as text, with the spreadsheet row number; wholly blank rows are dropped."""
    readers = {".xlsx": _read_xlsx, ".csv": _read_csv}
    reader = readers.get(source.suffix.lower())
    if reader is None:
        raise _FileError(
            f"{source.name}: unsupported file type '{source.suffix}' (use .xlsx or .csv)"
        )
    try:
        frame = reader(source, max_rows)
    except _FileError:
        raise
    except Exception as exc:  # any parser failure is the file's problem, not ours
        raise _FileError(f"{source.name}: unreadable ({type(exc).__name__}: {exc})") from exc
    frame = frame.with_row_index(ROW_NUMBER, offset=2).with_columns(
        pl.col(ROW_NUMBER).cast(pl.Int64)
    )
    cells = [n for n in frame.columns if not n.startswith("\0")]
    if not cells:
        return frame.clear()
    filled = pl.any_horizontal(pl.col(n).str.strip_chars().fill_null("") != "" for n in cells)
    return frame.filter(filled)


def _text(name: str) -> pl.Expr:
    """A cell as `cell_text` reads it: stripped, blank for missing."""
    return pl.col(name).fill_null("").str.strip_chars()


def _file_batch(path: _Source, rows: pl.DataFrame) -> str:
    """The batch the file belongs to: the batch id most of its rows carry."""
    counts = (
        rows.select(_text(BATCH_COLUMN).alias("batch"))
        .filter(pl.col("batch") != "")
        .group_by("batch")
        .len()
        .sort(["len", "batch"], descending=[True, False])
    )
    if counts.is_empty():
        raise _FileError(f"{path.name}: no batch_id in any row")
    if counts.height > 1 and counts["len"][0] == counts["len"][1]:
        raise _FileError(
            f"{path.name}: rows are split evenly between batches {sorted(counts['batch'])}"
        )
    return counts["batch"][0]


def _batch_open(
    path: _Source, batch_id: str, manifest: dict[str, Any], rules: VerdictRules
) -> None:
    """Refuse a file for a batch that is closed or past its expiry (due time plus grace)."""
    if batch_id in rules.closed_batches:
        raise _FileError(
            f"{path.name}: batch '{batch_id}' is closed ({rules.closed_batches[batch_id]}); "
            "verdicts for it are no longer accepted",
            batch_id,
        )
    expires = manifest.get("expires_at")
    if expires and rules.clock() > datetime.fromisoformat(expires):
        escalated = rules.escalated.get(batch_id, 0)
        told = (
            f"{escalated} of its cases escalated"
            if escalated
            else "none of its cases escalated yet (the review sweep escalates open cases)"
        )
        raise _FileError(
            f"{path.name}: batch '{batch_id}' expired at {expires} (due time plus grace); "
            f"verdicts for it are no longer accepted; {told}",
            batch_id,
        )


def _mapped(column: pl.Expr, mapping: Mapping[str, Any], dtype: pl.DataType) -> pl.Expr:
    return column.replace_strict(dict(mapping), default=None, return_dtype=dtype)


def _problems(
    rows: pl.DataFrame,
    manifest: dict[str, Any],
    batch_id: str,
    allowed: set[str],
    rules: VerdictRules,
    case_id: str,
) -> pl.DataFrame:
    """(row, column, value, problem, order) for everything wrong with the reviewed rows.

    Every check is a column expression over the whole file; `order` keeps a row's problems in
    the order a reviewer fixes them (answer cells, batch, case, then the answers).
    """
    cid, verdict, reason = pl.col("cid"), pl.col("verdict_text"), pl.col("reason_text")
    reviewer, suggested = pl.col("reviewer_text"), pl.col("suggested")
    known_case = cid.is_in(list(manifest["case_digests"]))
    digests = rows.filter(known_case).select(
        ROW_NUMBER,
        pl.Series(
            "digest",
            context_digests(rows.filter(known_case), manifest["digest_columns"]),
            dtype=pl.String,
        ),
    )
    rows = rows.join(digests, on=ROW_NUMBER, how="left")
    moved = dict(rules.moved_cases.get(batch_id, {}))
    needs_rationale = verdict.is_in(list(manifest.get("rationale_required_for", []))) | (
        suggested.is_not_null() & (suggested != verdict)
    )
    override_note = (
        pl.when(suggested.is_not_null() & (suggested != verdict))
        .then(pl.format(" that overrides the suggested '{}'", suggested))
        .otherwise(pl.lit(""))
    )
    checks: list[tuple[pl.Expr, str, pl.Expr, pl.Expr]] = [
        (
            pl.col(f"{_FORMULA}{name}"),
            name,
            _text(name),
            pl.lit("formulas are not accepted in answer cells; type a value"),
        )
        for name in VERDICT_COLUMNS
        if f"{_FORMULA}{name}" in rows.columns
    ]
    checks += [
        (
            pl.col("batch_text") != batch_id,
            BATCH_COLUMN,
            pl.col("batch_text"),
            pl.format(
                "row is from batch '{}', the file is batch '{}'", "batch_text", pl.lit(batch_id)
            ),
        ),
        (cid == "", case_id, cid, pl.lit("case id is blank")),
        (
            (cid != "") & ~known_case,
            case_id,
            cid,
            pl.format("case is not part of batch '{}'", pl.lit(batch_id)),
        ),
        (
            known_case & cid.is_in(list(moved)),
            case_id,
            cid,
            _mapped(cid, moved, pl.String()),
        ),
        (
            known_case & (pl.col("digest") != _mapped(cid, manifest["case_digests"], pl.String())),
            "context",
            pl.lit(""),
            pl.lit("case context differs from what was exported (a locked column was edited)"),
        ),
        (
            (cid != "") & pl.col("duplicated"),
            case_id,
            cid,
            pl.lit("case appears more than once in the file"),
        ),
        (
            ~verdict.is_in(sorted(allowed)),
            "verdict",
            pl.col("verdict_raw"),
            pl.lit(f"verdict must be one of {sorted(allowed)}"),
        ),
        (
            (reason != "") & ~reason.str.to_uppercase().is_in(list(manifest["reason_codes"])),
            "verdict_reason_code",
            reason,
            pl.lit("unknown reason code"),
        ),
        _reviewer_check(reviewer, rules.signer),
        (
            (pl.col("rationale_text") == "") & needs_rationale,
            "rationale",
            pl.lit(""),
            pl.format("a rationale is required for a '{}' verdict{}", verdict, override_note),
        ),
    ]
    found = [
        rows.filter(test.fill_null(False)).select(
            pl.col(ROW_NUMBER).alias("row_number"),
            cid.alias("case_id"),
            pl.lit(column).alias("column"),
            value.cast(pl.String).alias("value"),
            problem.alias("problem"),
            pl.lit(order).alias("order"),
        )
        for order, (test, column, value, problem) in enumerate(checks)
    ]
    return pl.concat(found).sort(["row_number", "order"])


def _reviewer_check(reviewer: pl.Expr, signer: str | None) -> tuple[pl.Expr, str, pl.Expr, pl.Expr]:
    """The typed `reviewer_id`: proves nothing, so with a signer it may only agree with them."""
    if signer is None:
        return (reviewer == "", "reviewer_id", reviewer, pl.lit("reviewer_id is required"))
    return (
        (reviewer != "") & (reviewer != signer),
        "reviewer_id",
        reviewer,
        pl.format(
            "the typed reviewer_id '{}' is not the signer '{}': a file is answered by whoever "
            "signs it; leave reviewer_id blank or type your own id",
            reviewer,
            pl.lit(signer),
        ),
    )


def _validate(
    path: _Source,
    file_sha: str,
    *,
    batches_dir: Path,
    key: bytes,
    allowed: set[str],
    case_id: str,
    rules: VerdictRules,
) -> tuple[str, dict[str, Any], pl.DataFrame, pl.DataFrame, int]:
    rows = _read_table(path, rules.max_rows)
    header = [name for name in rows.columns if not name.startswith("\0")]
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

    cid = _text(case_id)
    rows = rows.with_columns(
        cid=cid,
        duplicated=(cid != "") & cid.is_duplicated(),
        batch_text=_text(BATCH_COLUMN),
        verdict_raw=_text("verdict"),
        verdict_text=_text("verdict").str.to_lowercase(),
        reason_text=_text("verdict_reason_code"),
        reviewer_text=_text("reviewer_id"),
        rationale_text=_text("rationale"),
    )
    reviewed = rows.filter(pl.col("verdict_raw") != "").with_columns(
        suggested=_mapped(pl.col("cid"), manifest.get("suggested_actions", {}), pl.String())
    )
    problems = _problems(reviewed, manifest, batch_id, allowed, rules, case_id)
    rejected = problems.select(
        "row_number",
        pl.col("case_id").alias(case_id),
        "column",
        "value",
        pl.format(
            "{} row {}, column '{}': {}", pl.lit(path.name), "row_number", "column", "problem"
        ).alias("message"),
    )
    rationale = pl.col("rationale_text")
    accepted = reviewed.filter(~pl.col(ROW_NUMBER).is_in(problems["row_number"].implode())).select(
        pl.lit(batch_id).alias(BATCH_COLUMN),
        pl.col("cid").alias(case_id),
        pl.col("verdict_text").alias("verdict"),
        pl.col("reason_text").str.to_uppercase().alias("verdict_reason_code"),
        pl.when(rationale.str.contains(_FORMULA_START))
        .then(pl.lit("'") + rationale)
        .otherwise(rationale)
        .alias("rationale"),
        (pl.lit(rules.signer) if rules.signer else pl.col("reviewer_text")).alias("reviewer_id"),
        pl.lit(file_sha).alias("file_sha256"),
        pl.col("suggested").alias("suggested_action"),
        pl.col(ROW_NUMBER).alias("row_number"),
        pl.col("cid").is_in(list(manifest.get("four_eyes_cases", []))).alias("four_eyes"),
        (pl.col("suggested").is_not_null() & (pl.col("suggested") != pl.col("verdict_text"))).alias(
            "is_override"
        ),
    )
    not_reviewed = rows.height - reviewed.height
    return batch_id, manifest, accepted.cast(_accepted_schema(case_id)), rejected, not_reviewed


def validate_verdict_file(
    path: Path,
    *,
    batches_dir: Path,
    key: bytes,
    allowed_verdicts: Sequence[str],
    case_id: str,
    rules: VerdictRules | None = None,
    data: bytes | None = None,
    name: str | None = None,
) -> VerdictFileResult:
    """Check a returned XLSX or CSV against its signed batch; never raises on bad input.

    `data` is the file's bytes when the caller already read them (intake checks the signature
    over exactly these bytes, so they are the ones parsed); `name` is how messages name it.
    """
    empty_accepted = pl.DataFrame(schema=_accepted_schema(case_id))
    empty_rejected = pl.DataFrame(schema=_rejected_schema(case_id))
    shown = name or path.name
    try:
        content = path.read_bytes() if data is None else data
    except OSError as exc:
        return VerdictFileResult(
            path, "", None, empty_accepted, empty_rejected, f"{shown}: cannot read file ({exc})"
        )
    file_sha = hashlib.sha256(content).hexdigest()
    allowed = {verdict.strip().lower() for verdict in allowed_verdicts}
    try:
        batch_id, manifest, accepted, rejected, not_reviewed = _validate(
            _Source(shown, path.suffix, content),
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
        accepted=accepted,
        rejected=rejected.cast(_rejected_schema(case_id)),
        error=None,
        not_reviewed=not_reviewed,
        queue=manifest["queue"],
    )

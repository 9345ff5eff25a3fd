"""Verdict intake: the one path by which returned verdict files enter the audit database.

The Dagster sensor, the `reviewer_verdicts` asset and `hitl review ingest` all end here.
Exactly-once comes from the content hash: a file whose SHA-256 is already in `verdict_files`
is archived and ignored, and the insert of the file row, its verdicts and its rejections is
one transaction guarded by primary keys. A case keeps its first valid verdict.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.audit.store import insert_new_rows, query_frame, scalar
from hitl_gate.domain import DomainConfig

VERDICT_SUFFIXES = (".xlsx", ".csv")


@dataclass(frozen=True)
class IntakeOutcome:
    """What happened to one returned file."""

    file_name: str
    file_sha256: str
    batch_id: str | None
    accepted: int
    rejected: int
    duplicate: bool
    error: str | None
    messages: tuple[str, ...]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def peek_batch_id(path: Path) -> str | None:
    """The batch id a returned file names in its `batch_id` column, or None if unreadable."""
    try:
        if path.suffix.lower() == ".csv":
            frame = pl.read_csv(path, infer_schema=False, n_rows=1, columns=["batch_id"])
        else:
            from openpyxl import load_workbook

            sheet = load_workbook(path, read_only=True)["cases"]
            rows = sheet.iter_rows(min_row=1, max_row=2, values_only=True)
            header, first = next(rows), next(rows)
            return str(first[list(header).index("batch_id")])
        return frame["batch_id"][0] if frame.height else None
    except Exception:  # noqa: BLE001 - any unreadable file is simply "not peekable"
        return None


def batch_partition(batch_id: str, domain: DomainConfig) -> date | None:
    """The partition day encoded in a batch id (`<domain>-<YYYYMMDD>-...`)."""
    prefix = f"{domain.name}-"
    if not batch_id.startswith(prefix):
        return None
    try:
        return datetime.strptime(batch_id[len(prefix) : len(prefix) + 8], "%Y%m%d").date()
    except ValueError:
        return None


def pending_files(inbox: Path) -> list[Path]:
    """Verdict files waiting in the inbox, oldest name first."""
    if not inbox.exists():
        return []
    return sorted(p for p in inbox.iterdir() if p.suffix.lower() in VERDICT_SUFFIXES)


def ingest_verdict_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    domain: DomainConfig,
    batches_dir: Path,
    archive_dir: Path,
    key: bytes,
    run_id: str,
) -> IntakeOutcome:
    """Validate one returned file and record it exactly once; archive it by hash."""
    from hitl_gate.review.verdicts import validate_verdict_file

    sha = file_sha256(path)
    archive_dir.mkdir(parents=True, exist_ok=True)
    archived = archive_dir / f"{sha}{path.suffix.lower()}"
    if scalar(con, "SELECT count(*) FROM verdict_files WHERE file_sha256 = ?", [sha]):
        _archive(path, archived)
        return IntakeOutcome(path.name, sha, None, 0, 0, True, None, ())
    result = validate_verdict_file(
        path,
        batches_dir=batches_dir,
        key=key,
        allowed_verdicts=domain.review.verdicts,
        case_id=domain.case_id,
    )
    now = datetime.now(UTC)
    accepted = result.accepted.rename({domain.case_id: "case_id"}).with_columns(
        pl.col("case_id").cast(pl.String)
    )
    already = query_frame(
        con,
        "SELECT case_id, file_sha256 FROM verdicts WHERE domain = ? "
        "AND case_id IN (SELECT unnest(?::VARCHAR[]))",
        [domain.name, accepted["case_id"].to_list()],
    )
    late = accepted.join(already.select("case_id"), on="case_id", how="semi")
    accepted = accepted.join(already.select("case_id"), on="case_id", how="anti")
    rejected = pl.concat(
        [
            result.rejected.rename(
                {domain.case_id: "case_id", "column": "column_name"}
            ).with_columns(pl.col("case_id").cast(pl.String), pl.col("value").cast(pl.String)),
            late.select(
                "row_number",
                "case_id",
                pl.lit("verdict").alias("column_name"),
                pl.col("verdict").alias("value"),
                pl.format(
                    "{} row {}: case {} already has a verdict; the first verdict stands",
                    pl.lit(path.name),
                    "row_number",
                    "case_id",
                ).alias("message"),
            ),
        ],
        how="diagonal_relaxed",
    )
    con.execute("BEGIN TRANSACTION")
    try:
        insert_new_rows(
            con,
            "verdict_files",
            pl.DataFrame(
                {
                    "file_sha256": [sha],
                    "file_name": [path.name],
                    "archived_path": [str(archived)],
                    "batch_id": [result.batch_id],
                    "rows_accepted": [accepted.height],
                    "rows_rejected": [rejected.height],
                    "error": [result.error],
                    "received_at": [now],
                    "run_id": [run_id],
                }
            ),
        )
        insert_new_rows(
            con,
            "verdicts",
            accepted.select(
                pl.lit(domain.name).alias("domain"),
                "case_id",
                "batch_id",
                "verdict",
                "verdict_reason_code",
                "rationale",
                "reviewer_id",
                "file_sha256",
                "row_number",
                pl.lit(now).alias("received_at"),
            ),
        )
        if rejected.height:
            con.register(
                "incoming_rejections",
                rejected.with_columns(pl.lit(sha).alias("file_sha256")).to_arrow(),
            )
            con.execute("INSERT INTO verdict_rejections BY NAME SELECT * FROM incoming_rejections")
            con.unregister("incoming_rejections")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    _archive(path, archived)
    messages = tuple(rejected["message"].to_list()) + ((result.error,) if result.error else ())
    return IntakeOutcome(
        path.name,
        sha,
        result.batch_id,
        accepted.height,
        rejected.height,
        False,
        result.error,
        messages,
    )


def _archive(path: Path, archived: Path) -> None:
    """Keep the received bytes under their hash and clear the inbox entry."""
    if not archived.exists():
        shutil.copy2(path, archived)
    path.unlink(missing_ok=True)

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

from hitl_gate.core.database import insert_new_rows, scalar, transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.intake.conflicts import record_resolutions
from hitl_gate.review.intake.escalation import moved_cases, resolve_breaches
from hitl_gate.review.intake.finality import (
    CONFLICT,
    DISAGREEMENT,
    CaseState,
    Outcome,
    decide,
    split_first_single,
)
from hitl_gate.review.intake.validation import (
    VerdictFileResult,
    VerdictRules,
    validate_verdict_file,
)
from hitl_gate.review.settings import ReviewSettings

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
    pending_second: int = 0  # four-eyes cases waiting for a second reviewer
    escalated: int = 0
    conflicts_resolved: int = 0


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
    """Verdict files waiting in the inbox, in name order.

    The order decides which of two files answering the same case wins (the first valid final
    verdict stands), so it must not depend on arrival timing or the file system's listing.
    """
    if not inbox.exists():
        return []
    files = [p for p in inbox.iterdir() if p.is_file() and p.suffix.lower() in VERDICT_SUFFIXES]
    return sorted(files, key=lambda p: p.name)


def _case_states(
    con: duckdb.DuckDBPyConnection, domain: str, case_ids: pl.Series
) -> dict[str, CaseState]:
    """Final verdict, earlier opinions and open disagreement escalation of the cases that have any.

    A case with nothing recorded is absent (the common case: its first verdict). The file's
    case ids are joined as a registered table, not bound as a list.
    """
    con.register("file_cases", case_ids.rename("case_id").to_frame().to_arrow())
    try:
        in_cases = "domain = ? AND case_id IN (SELECT case_id FROM file_cases)"
        finals = dict(
            con.execute(
                f"SELECT case_id, verdict FROM verdicts WHERE {in_cases}", [domain]
            ).fetchall()
        )
        opinions: dict[str, list[tuple[str, str]]] = {}
        for case, reviewer, verdict in con.execute(
            f"SELECT case_id, reviewer_id, verdict FROM verdict_opinions WHERE {in_cases} "
            "ORDER BY received_at, row_number",
            [domain],
        ).fetchall():
            opinions.setdefault(case, []).append((reviewer, verdict))
        open_escalations = dict(
            con.execute(
                f"SELECT case_id, escalate_to FROM review_escalations WHERE {in_cases} "
                "AND kind = ? AND resolved_at IS NULL",
                [domain, DISAGREEMENT],
            ).fetchall()
        )
        conflicts = dict(
            con.execute(
                f"SELECT case_id, escalate_to FROM review_escalations WHERE {in_cases} "
                "AND kind = ? AND resolved_at IS NULL AND escalate_to IS NOT NULL",
                [domain, CONFLICT],
            ).fetchall()
        )
        resolved_by = dict(
            con.execute(
                f"SELECT case_id, reviewer_id FROM conflict_resolutions WHERE {in_cases}", [domain]
            ).fetchall()
        )
        executed = dict(
            con.execute(
                f"SELECT case_id, action FROM executions WHERE {in_cases}", [domain]
            ).fetchall()
        )
    finally:
        con.unregister("file_cases")
    return {
        case: CaseState(
            final_verdict=finals.get(case),
            opinions=tuple(opinions.get(case, ())),
            escalated_to=open_escalations.get(case),
            escalated=case in open_escalations,
            conflict_to=conflicts.get(case),
            conflict_resolved_by=resolved_by.get(case),
            executed_action=executed.get(case),
        )
        for case in {*finals, *opinions, *open_escalations}
    }


def _closed_batches(con: duckdb.DuckDBPyConnection, domain: str) -> dict[str, str]:
    return dict(
        con.execute(
            "SELECT batch_id, reason FROM review_batch_closures WHERE domain = ?", [domain]
        ).fetchall()
    )


def _write_report(archived: Path, rejected: pl.DataFrame, error: str | None) -> Path | None:
    """The per-row error report, next to the archived file: `<sha>.errors.csv`."""
    if rejected.is_empty() and error is None:
        return None
    report = archived.with_name(archived.stem + ".errors.csv")
    frame = rejected.select("row_number", "case_id", "column_name", "value", "message")
    if error is not None:
        frame = pl.concat([frame, pl.DataFrame({"message": [error]})], how="diagonal_relaxed")
    frame.write_csv(report)
    return report


def ingest_verdict_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    domain: DomainConfig,
    batches_dir: Path,
    archive_dir: Path,
    key: bytes,
    run_id: str,
    settings: ReviewSettings | None = None,
    now: datetime | None = None,
) -> IntakeOutcome:
    """Validate one returned file and record it exactly once; archive it by hash."""
    sha = file_sha256(path)
    archive_dir.mkdir(parents=True, exist_ok=True)
    archived = archive_dir / f"{sha}{path.suffix.lower()}"
    if scalar(con, "SELECT count(*) FROM verdict_files WHERE file_sha256 = ?", [sha]):
        _archive(path, archived)
        return IntakeOutcome(path.name, sha, None, 0, 0, True, None, ())
    now = now or datetime.now(UTC)
    result = validate_verdict_file(
        path,
        batches_dir=batches_dir,
        key=key,
        allowed_verdicts=domain.review.verdicts,
        case_id=domain.case_id,
        rules=VerdictRules(
            settings=settings,
            now=now,
            closed_batches=_closed_batches(con, domain.name),
            moved_cases=moved_cases(con, domain.name),
        ),
    )
    accepted = result.accepted.rename({domain.case_id: "case_id"}).with_columns(
        pl.col("case_id").cast(pl.String)
    )
    states = _case_states(con, domain.name, accepted["case_id"])
    single, rest = split_first_single(accepted, states)
    outcome = decide(
        rest.to_dicts(),
        states,
        domain=domain.name,
        queue=result.queue or "",
        settings=settings,
        file_name=path.name,
    )
    outcome.single = single
    rejected = pl.concat(
        [
            result.rejected.rename(
                {domain.case_id: "case_id", "column": "column_name"}
            ).with_columns(pl.col("case_id").cast(pl.String), pl.col("value").cast(pl.String)),
            pl.DataFrame(
                outcome.rejections,
                schema={
                    "row_number": pl.Int64,
                    "case_id": pl.String,
                    "column_name": pl.String,
                    "value": pl.String,
                    "message": pl.String,
                },
            ),
        ],
        how="diagonal_relaxed",
    )
    _record(con, domain.name, path.name, sha, archived, result, outcome, rejected, now, run_id)
    _archive(path, archived)
    _write_report(archived, rejected, result.error)
    messages = tuple(rejected["message"].to_list()) + ((result.error,) if result.error else ())
    return IntakeOutcome(
        path.name,
        sha,
        result.batch_id,
        outcome.accepted_count,
        rejected.height,
        False,
        result.error,
        messages,
        pending_second=outcome.pending_second,
        escalated=len(outcome.escalations),
        conflicts_resolved=len(outcome.resolutions),
    )


_VERDICT_COLUMNS = (
    "case_id", "batch_id", "verdict", "verdict_reason_code", "rationale", "reviewer_id",
    "file_sha256", "row_number",
)  # fmt: skip
_OPINION_COLUMNS = (*_VERDICT_COLUMNS, "stage", "suggested_action", "is_override", "four_eyes")


def _rows(
    single: pl.DataFrame,
    rows: list[dict],
    columns: tuple[str, ...],
    domain: str,
    now: datetime,
    stage: str | None = None,
) -> pl.DataFrame:
    """The rows to insert: the frame of first single reviews plus the rows decided one by one."""
    first = single.with_columns(pl.lit(stage).alias("stage")) if stage else single
    decided = pl.DataFrame(
        [{name: row.get(name) for name in columns} for row in rows],
        schema=first.select(columns).schema,
    )
    frame = pl.concat([first.select(columns), decided])
    return frame.with_columns(pl.lit(domain).alias("domain"), pl.lit(now).alias("received_at"))


def _record(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    file_name: str,
    sha: str,
    archived: Path,
    result: VerdictFileResult,
    outcome: Outcome,
    rejected: pl.DataFrame,
    now: datetime,
    run_id: str,
) -> None:
    """Write the file row, opinions, final verdicts, escalations and rejections atomically."""
    with transaction(con):
        insert_new_rows(
            con,
            "verdict_files",
            pl.DataFrame(
                {
                    "file_sha256": [sha],
                    "file_name": [file_name],
                    "archived_path": [str(archived)],
                    "batch_id": [result.batch_id],
                    "rows_accepted": [outcome.accepted_count],
                    "rows_rejected": [rejected.height],
                    "error": [result.error],
                    "received_at": [now],
                    "run_id": [run_id],
                }
            ),
        )
        single = outcome.single
        if outcome.opinions or single.height:
            opinions = _rows(single, outcome.opinions, _OPINION_COLUMNS, domain, now, "single")
            insert_new_rows(con, "verdict_opinions", opinions)
        if outcome.final_count:
            finals = _rows(single, outcome.finals, _VERDICT_COLUMNS, domain, now)
            insert_new_rows(con, "verdicts", finals)
            resolve_breaches(con, domain, finals, now)
        if outcome.escalations:
            insert_new_rows(
                con,
                "review_escalations",
                pl.DataFrame(outcome.escalations).with_columns(
                    pl.lit(now).alias("raised_at"),
                    pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("resolved_at"),
                ),
            )
        if outcome.resolved:
            con.execute(
                "UPDATE review_escalations SET resolved_at = ? WHERE escalation_id IN "
                "(SELECT unnest(?::VARCHAR[])) AND resolved_at IS NULL",
                [now, outcome.resolved],
            )
        record_resolutions(con, domain, outcome.resolutions, now)
        if rejected.height:
            con.register(
                "incoming_rejections",
                rejected.with_columns(pl.lit(sha).alias("file_sha256")).to_arrow(),
            )
            con.execute("INSERT INTO verdict_rejections BY NAME SELECT * FROM incoming_rejections")
            con.unregister("incoming_rejections")


def _archive(path: Path, archived: Path) -> None:
    """Keep the received bytes under their hash and clear the inbox entry."""
    if not archived.exists():
        shutil.copy2(path, archived)
    path.unlink(missing_ok=True)

"""Verdict intake: the one path by which returned verdict files enter the audit database.

The Dagster sensor, the `reviewer_verdicts` asset and `hitl review ingest` all end here. In
order: the size cap (`limits`), the file's detached SSH signature against the people registry
(`signed`: nothing of an unsigned or wrongly signed file is read), the rows against the batch's
signed manifest (`validation`, over exactly the bytes whose signature was checked), the signer
against the batch's assignee, each case against the batch's recorded members, then finality.
Exactly-once comes from the content hash: a file whose SHA-256 is already in `verdict_files`
is archived and reported, never applied again, and the insert of the file row, its verdicts
and its (bounded) rejections is one transaction guarded by primary keys. A case keeps its first
valid verdict.
"""

from __future__ import annotations

import hashlib
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, registered, transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.acts import IdentityError
from hitl_gate.identity.registry import Registry
from hitl_gate.identity.signatures import signature_path
from hitl_gate.identity.store import load_registry
from hitl_gate.review.gold_cases import gold_case_ids
from hitl_gate.review.intake.authority import ReviewAuthority
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
from hitl_gate.review.intake.limits import IntakeLimits
from hitl_gate.review.intake.received import (
    remove_empty_hash_folder,
)
from hitl_gate.review.intake.results import IntakeOutcome, earlier_outcome
from hitl_gate.review.intake.sealing import insert_claimed
from hitl_gate.review.intake.signed import (
    SignedReturn,
    read_signature,
    record_refusal,
    require_assignee,
    verify_return,
)
from hitl_gate.review.intake.validation import (
    VerdictFileResult,
    VerdictRules,
    validate_verdict_file,
)
from hitl_gate.review.settings import ReviewSettings


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


def _case_states(
    con: duckdb.DuckDBPyConnection, domain: str, case_ids: pl.Series
) -> dict[str, CaseState]:
    """Final verdict, earlier opinions and open disagreement escalation of the cases that have any.

    A case with nothing recorded is absent (the common case: its first verdict). The file's
    case ids are joined as a registered table, not bound as a list. One query (each DuckDB
    statement costs a millisecond or two of planning, whatever it reads; there were six): a
    row per fact, tagged by kind, the opinions in the order they were received. Every other
    kind has at most one row per case (each table's key is the case, or the escalation of one
    kind of the case).
    """
    in_cases = "domain = $domain AND case_id IN (SELECT case_id FROM file_cases)"
    sql = f"""
        SELECT 'final' AS kind, case_id, verdict AS a, NULL AS b, NULL AS c,
               NULL AS received_at, NULL AS row_number
        FROM verdicts WHERE {in_cases}
        UNION ALL
        SELECT 'opinion', case_id, reviewer_id, verdict, signer_fingerprint, received_at,
               row_number
        FROM verdict_opinions WHERE {in_cases}
        UNION ALL
        SELECT 'escalated', case_id, escalate_to, NULL, NULL, NULL, NULL
        FROM review_escalations
        WHERE {in_cases} AND kind = $disagreement AND resolved_at IS NULL
        UNION ALL
        SELECT 'conflict', case_id, escalate_to, NULL, NULL, NULL, NULL
        FROM review_escalations
        WHERE {in_cases} AND kind = $conflict AND resolved_at IS NULL
          AND escalate_to IS NOT NULL
        UNION ALL
        SELECT 'resolved', case_id, reviewer_id, NULL, NULL, NULL, NULL
        FROM conflict_resolutions WHERE {in_cases}
        UNION ALL
        SELECT 'executed', case_id, action, NULL, NULL, NULL, NULL
        FROM executions WHERE {in_cases}
        ORDER BY kind, received_at, row_number
    """
    with registered(con, "file_cases", case_ids.rename("case_id").to_frame().to_arrow()):
        rows = con.execute(
            sql, {"domain": domain, "disagreement": DISAGREEMENT, "conflict": CONFLICT}
        ).fetchall()
    facts: dict[str, dict[str, Any]] = {
        kind: {} for kind in ("final", "escalated", "conflict", "resolved", "executed")
    }
    opinions: dict[str, list[tuple[str, str]]] = {}
    keys: dict[str, list[str | None]] = {}
    for kind, case, a, b, c, _, _ in rows:
        if kind == "opinion":
            opinions.setdefault(case, []).append((a, b))
            keys.setdefault(case, []).append(c)
        else:
            facts[kind][case] = a
    finals, open_escalations = facts["final"], facts["escalated"]
    return {
        case: CaseState(
            final_verdict=finals.get(case),
            opinions=tuple(opinions.get(case, ())),
            escalated_to=open_escalations.get(case),
            escalated=case in open_escalations,
            conflict_to=facts["conflict"].get(case),
            conflict_resolved_by=facts["resolved"].get(case),
            executed_action=facts["executed"].get(case),
            opinion_keys=tuple(keys.get(case, ())),
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
    registry: Registry | None = None,
    limits: IntakeLimits | None = None,
    name: str | None = None,
) -> IntakeOutcome:
    """Verify who signed one returned file, validate it and record it exactly once; archive it
    by hash (with its signature). `registry` defaults to the one stored in `con`."""
    limits = limits or IntakeLimits()
    shown = name or path.name
    now = now or datetime.now(UTC)
    signature = read_signature(path)
    oversize = limits.size_refusal(shown, path.stat().st_size)
    data = b"" if oversize else path.read_bytes()
    sha = file_sha256(path) if oversize else hashlib.sha256(data).hexdigest()
    archive_dir.mkdir(parents=True, exist_ok=True)
    archived = archive_dir / f"{sha}{path.suffix.lower()}"
    earlier = earlier_outcome(con, shown, sha, signature)
    if earlier is not None:
        _archive(path, archived)
        return earlier
    if oversize:
        return _refuse_file(con, path, shown, sha, archived, oversize, now, run_id)
    if registry is None:
        registry = load_registry(con)
    try:
        signed = verify_return(
            con,
            registry,
            data,
            signature,
            file_name=shown,
            file_sha256=sha,
            at=now,
        )
    except IdentityError as refusal:
        return _refuse_identity(con, path, shown, sha, archived, signature, str(refusal))
    returned = SignedBytes(data=data, name=shown, sha=sha, archived=archived, signed=signed)
    # Archived before the rows commit: an intake killed after its commit and before its seal
    # leaves the signed bytes its rows came from where `recovery` looks for them.
    _keep(path, archived)
    context = IntakeContext(
        domain=domain,
        batches_dir=batches_dir,
        key=key,
        run_id=run_id,
        settings=settings,
        now=now,
        registry=registry,
        limits=limits,
    )
    try:
        outcome = take_in_signed(con, returned, context)
    except IdentityError as refusal:
        return _refuse_identity(con, path, shown, sha, archived, signature, str(refusal))
    _archive(path, archived)
    return outcome


@dataclass(frozen=True)
class SignedBytes:
    """Returned verdict rows whose signer is already verified: the exact bytes (CSV or XLSX,
    by `archived`'s suffix), how messages name them, their SHA-256, where they are archived and
    the verified signature (a reviewer's file signature, or a portal attestation)."""

    data: bytes
    name: str
    sha: str
    archived: Path
    signed: SignedReturn


@dataclass(frozen=True)
class IntakeContext:
    """What taking verdict rows in needs beyond the rows: the domain, batches, key and clock."""

    domain: DomainConfig
    batches_dir: Path
    key: bytes
    run_id: str
    settings: ReviewSettings | None
    now: datetime
    registry: Registry
    limits: IntakeLimits
    # Recovery's replay (`recovery.py`): the caller holds the transaction (and rolls it back),
    # and no error report is written.
    replay: bool = False


def take_in_signed(
    con: duckdb.DuckDBPyConnection, returned: SignedBytes, context: IntakeContext
) -> IntakeOutcome:
    """Validate verified rows against their batch, check the signer is its assignee, apply
    finality and record them in one transaction: the one path of a file and a portal verdict.

    Raises `IdentityError` when the signer is not the batch's assignee (nothing recorded); the
    caller records that refusal its own way. Archiving the bytes is the caller's job too.
    """
    domain, settings, now, limits = (
        context.domain, context.settings, context.now, context.limits
    )  # fmt: skip
    shown, sha, archived, signed = returned.name, returned.sha, returned.archived, returned.signed
    result = validate_verdict_file(
        archived,
        batches_dir=context.batches_dir,
        key=context.key,
        allowed_verdicts=domain.review.verdicts,
        case_id=domain.case_id,
        rules=VerdictRules(
            settings=settings,
            now=now,
            closed_batches=_closed_batches(con, domain.name),
            moved_cases=moved_cases(con, domain.name),
            signer=signed.signer.person_id,
            max_rows=limits.max_rows,
            escalated=_escalated_per_batch(con, domain.name),
        ),
        data=returned.data,
        name=shown,
    )
    authority = ReviewAuthority(context.registry, domain.name, settings, now)
    if result.batch_id is not None and result.error is None:
        require_assignee(con, signed, authority, file_name=shown, batch_id=result.batch_id)
    accepted = result.accepted.rename({domain.case_id: "case_id"}).with_columns(
        pl.col("case_id").cast(pl.String),
        pl.lit(signed.signer.fingerprint).alias("signer_fingerprint"),
    )
    accepted, outside = _batch_members_only(con, domain.name, result.batch_id, accepted, shown)
    states = _case_states(con, domain.name, accepted["case_id"])
    single, rest = split_first_single(accepted, states)
    outcome = decide(
        rest.to_dicts(),
        states,
        domain=domain.name,
        queue=result.queue or "",
        settings=settings,
        file_name=shown,
        may_work=authority.may_work,
    )
    outcome.single = single
    rejected = pl.concat(
        [
            result.rejected.rename(
                {domain.case_id: "case_id", "column": "column_name"}
            ).with_columns(pl.col("case_id").cast(pl.String), pl.col("value").cast(pl.String)),
            outside,
            pl.DataFrame(outcome.rejections, schema=_REJECTION_SCHEMA),
        ],
        how="diagonal_relaxed",
    )
    stored = _bounded(rejected, limits.stored_rejections, shown)
    written = _record(
        con,
        domain.name,
        _FileRow(shown, sha, archived, result, rejected.height, signed, now, context.run_id),
        outcome,
        stored,
        atomic=not context.replay,
    )
    if not context.replay:
        _write_report(archived, stored, result.error)
    messages = tuple(stored["message"].to_list()) + ((result.error,) if result.error else ())
    return IntakeOutcome(
        shown,
        sha,
        result.batch_id,
        outcome.accepted_count,
        rejected.height,
        False,
        result.error,
        _capped(messages, limits.messages, shown),
        pending_second=outcome.pending_second,
        escalated=len(outcome.escalations),
        conflicts_resolved=len(outcome.resolutions),
        signer_id=signed.signer.person_id,
        signer_fingerprint=signed.signer.fingerprint,
        written=written,
    )


_REJECTION_SCHEMA = {
    "row_number": pl.Int64,
    "case_id": pl.String,
    "column_name": pl.String,
    "value": pl.String,
    "message": pl.String,
}


def _refuse_identity(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    sha: str,
    archived: Path,
    signature: str | None,
    reason: str,
) -> IntakeOutcome:
    """Keep the identity refusal (not in `verdict_files`: the same bytes correctly signed are
    still accepted later) and move the file and its signature out of the inbox."""
    with transaction(con):
        record_refusal(con, sha, signature, reason)
    _archive(path, archived)
    return IntakeOutcome(
        name, sha, None, 0, 0, False, reason, (reason,), identity_refused=True
    )  # fmt: skip


def _refuse_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    sha: str,
    archived: Path,
    reason: str,
    now: datetime,
    run_id: str,
) -> IntakeOutcome:
    """A file refused whole before it is read (over a cap): one row, one error."""
    with transaction(con):
        insert_new_rows(
            con,
            "verdict_files",
            pl.DataFrame(
                {
                    "file_sha256": [sha],
                    "file_name": [name],
                    "archived_path": [str(archived)],
                    "batch_id": [None],
                    "rows_accepted": [0],
                    "rows_rejected": [0],
                    "error": [reason],
                    "received_at": [now],
                    "run_id": [run_id],
                },
                schema_overrides={"batch_id": pl.String},
            ),
        )
    _archive(path, archived)
    return IntakeOutcome(name, sha, None, 0, 0, False, reason, (reason,))


def _escalated_per_batch(con: duckdb.DuckDBPyConnection, domain: str) -> dict[str, int]:
    return {
        str(batch): int(count)
        for batch, count in con.execute(
            "SELECT batch_id, count(DISTINCT case_id) FROM review_escalations "
            "WHERE domain = ? AND batch_id IS NOT NULL GROUP BY batch_id",
            [domain],
        ).fetchall()
    }


def _batch_members_only(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    batch_id: str | None,
    accepted: pl.DataFrame,
    name: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose (batch, case) the audit database records, refusals of the others).

    A verdict is matched by its batch and case together: the signed manifest lists the case,
    and the database must hold it as a member of that batch too (a batch whose export did not
    commit, or a case id answering in the wrong batch, is never taken as another case).
    """
    if accepted.is_empty() or batch_id is None:
        return accepted, pl.DataFrame(schema=_REJECTION_SCHEMA)
    # Fetched as rows, not as a frame: a batch holds tens of cases, and DuckDB's frame
    # conversion costs some 5 ms whatever the size (a tenth of a small file's intake).
    members = pl.Series(
        [
            None if case is None else str(case)
            for (case,) in con.execute(
                "SELECT case_id FROM review_batch_members WHERE domain = ? AND batch_id = ?",
                [domain, batch_id],
            ).fetchall()
        ],
        dtype=pl.String,
    )
    inside = pl.col("case_id").is_in(members.implode())
    outside = accepted.filter(~inside).select(
        "row_number",
        "case_id",
        pl.lit("case_id").alias("column_name"),
        pl.col("case_id").alias("value"),
        pl.format(
            "{} row {}, column 'case_id': case {} is not recorded as a member of batch '{}' in "
            "the audit database (an export that did not complete?)",
            pl.lit(name),
            "row_number",
            "case_id",
            pl.lit(batch_id),
        ).alias("message"),
    )
    return accepted.filter(inside), outside


def _bounded(rejected: pl.DataFrame, limit: int, name: str) -> pl.DataFrame:
    """At most `limit` refused rows one by one, then one summary row counting the rest."""
    if rejected.height <= limit:
        return rejected
    rest = rejected.height - limit
    summary = pl.DataFrame(
        {"message": [f"{name}: {rest:,} more refused rows, not recorded one by one"]}
    )
    return pl.concat([rejected.head(limit), summary], how="diagonal_relaxed")


def _capped(messages: tuple[str, ...], limit: int, name: str) -> tuple[str, ...]:
    if len(messages) <= limit:
        return messages
    more = len(messages) - limit
    return (*messages[:limit], f"{name}: {more:,} more messages (see its error report)")


_VERDICT_COLUMNS = (
    "case_id", "batch_id", "verdict", "verdict_reason_code", "rationale", "reviewer_id",
    "file_sha256", "row_number",
)  # fmt: skip
_OPINION_COLUMNS = (
    *_VERDICT_COLUMNS, "stage", "suggested_action", "is_override", "four_eyes",
    "signer_fingerprint",
)  # fmt: skip


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


@dataclass(frozen=True)
class _FileRow:
    """The `verdict_files` row of a file taken in: what, from whom, and how many refused."""

    name: str
    sha: str
    archived: Path
    result: VerdictFileResult
    rejected: int
    signed: SignedReturn
    now: datetime
    run_id: str


def _record(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    file: _FileRow,
    outcome: Outcome,
    rejected: pl.DataFrame,
    *,
    atomic: bool = True,
) -> dict[str, list[str]]:
    """Write the file row, opinions, final verdicts, escalations and rejections atomically
    (`atomic=False`: inside the caller's transaction).

    Returns the opinion and verdict keys inserted (per event type), which the caller seals on
    this connection (`sealing.seal_written`): no other seal logs them.
    """
    now, sha = file.now, file.sha
    written: dict[str, list[str]] = {}
    with transaction(con) if atomic else nullcontext(con):
        insert_new_rows(
            con,
            "verdict_files",
            pl.DataFrame(
                {
                    "file_sha256": [sha],
                    "file_name": [file.name],
                    "archived_path": [str(file.archived)],
                    "batch_id": [file.result.batch_id],
                    "rows_accepted": [outcome.accepted_count],
                    "rows_rejected": [file.rejected],
                    "error": [file.result.error],
                    "received_at": [now],
                    "run_id": [file.run_id],
                    "signer_id": [file.signed.signer.person_id],
                    "signer_fingerprint": [file.signed.signer.fingerprint],
                    "signature": [file.signed.signature],
                    "signature_sha256": [file.signed.signature_sha256],
                },
                schema_overrides={"batch_id": pl.String, "error": pl.String},
            ),
        )
        single = outcome.single
        if outcome.opinions or single.height:
            opinions = _rows(single, outcome.opinions, _OPINION_COLUMNS, domain, now, "single")
            written["verdict_opinion"] = insert_claimed(con, "verdict_opinions", opinions)
        if outcome.final_count:
            finals = _rows(single, outcome.finals, _VERDICT_COLUMNS, domain, now)
            # A gold case's opinion is scored (review/quality.py), never a final verdict.
            finals = finals.filter(~pl.col("case_id").is_in(list(gold_case_ids(con, domain))))
            written["verdict"] = insert_claimed(con, "verdicts", finals)
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
        record_resolutions(
            con,
            domain,
            outcome.resolutions,
            now,
            signer=file.signed.signer,
            file_signature=file.signed.signature,
        )
        if rejected.height:
            con.register(
                "incoming_rejections",
                rejected.with_columns(pl.lit(sha).alias("file_sha256")).to_arrow(),
            )
            con.execute("INSERT INTO verdict_rejections BY NAME SELECT * FROM incoming_rejections")
            con.unregister("incoming_rejections")
    return written


def _keep(path: Path, archived: Path) -> None:
    """Keep the received bytes under their hash, and the signature beside them."""
    if not archived.exists():
        shutil.copy2(path, archived)
    signature = signature_path(path)
    if signature.is_file():
        shutil.copy2(signature, signature_path(archived))


def _archive(path: Path, archived: Path) -> None:
    """Keep the received bytes (`_keep`); clear the inbox entry, and its content-hash folder
    once empty."""
    _keep(path, archived)
    signature_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    remove_empty_hash_folder(path.parent)

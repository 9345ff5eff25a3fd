"""Retention: remove personal data past its retention period, keep the audit records provable.

Data classes (months per class in the domain's `retention` section, `domain.RetentionConfig`),
each dated by the partition day the data belongs to:
- `raw_inputs`: landing files (`<landing>/<subdir>/<day>/`), and stored partition files of any
  stage that holds an input column of the contract besides the case id and event time
  (validated cases, features, routed decisions; decided from each file's Parquet schema);
- `reviewer_files`: exported review and escalation batch folders, and returned verdict files
  archived under their hash (with their `.errors.csv`), dated by their batch's day;
- `quarantined_values`: the offending raw value kept in `quarantine` (`value`, and the copy
  quoted at the start of `message`), redacted in place.

Audit records (lineage tables, the chain, checkpoints) are not removed: the chain holds
hashes and ids, and the lineage tables the decisions themselves. Redacting quarantine rows
changes their content, so the redacted rows are sealed again (`seal_run`), appending a
`row_quarantined` event with the redacted digest: the earlier event stays in the chain (its
digest, no value), `hitl audit verify` stays green, and `case_history` shows both.

Removing is not enough: a deleted or updated row stays in a database file's bytes until the file
is rewritten. So every apply ends by rewriting the home's databases from their live content
(`hitl_gate.audit.store_rewrite`: DuckDB files copied to a fresh file and swapped, SQLite files
scrubbed of personal Dagster metadata and vacuumed), after the audit connection is closed. Each
domain's apply records the rewrite it asks for (`store_rewrite` rows of `retention_actions`,
sealed like every other removal).

Nothing younger than the legal minimum is ever removed: the plan is checked item by item
against today's date (not the requested `as_of`) before anything is touched, and the whole
request is refused, naming the first offending item, if one would be.
"""

from __future__ import annotations

import calendar
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from hitl_gate.core.database import transaction
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.home import HitlPaths

if TYPE_CHECKING:
    from hitl_gate.audit.signer import CheckpointSigner

REDACTED = "[removed]"
FILE_KINDS = ("landing_file", "stored_partition", "review_batch", "verdict_file")
REWRITE = "store_rewrite"


class RetentionRefused(RuntimeError):
    """The request would remove data younger than the legal minimum; nothing was removed."""


@dataclass(frozen=True)
class Removal:
    """One thing to remove: a file or folder, or one day's quarantine values."""

    data_class: str
    kind: str
    target: str
    partition_date: date
    items: int
    sha256: str | None = None


@dataclass(frozen=True)
class RetentionPlan:
    domain: DomainConfig
    as_of: date
    removals: tuple[Removal, ...]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.removals:
            counts[r.kind] = counts.get(r.kind, 0) + r.items
        parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
        return f"{self.domain.name}: as of {self.as_of}: {parts}"


def add_months(day: date, months: int) -> date:
    """`day` moved by `months` calendar months (the last day of a shorter month if needed)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def expired(day: date, months: int, as_of: date) -> bool:
    """Data of partition `day` kept `months` is expired on `as_of` (kept through the period)."""
    return add_months(day, months) <= as_of


def plan_retention(
    con: duckdb.DuckDBPyConnection, paths: HitlPaths, domain: DomainConfig, as_of: date
) -> RetentionPlan:
    """Everything of `domain` that is past its class's retention on `as_of`."""
    months = domain.retention.months()
    removals = [
        *_landing_files(paths, domain, as_of, months["raw_inputs"]),
        *_stored_partitions(paths, domain, as_of, months["raw_inputs"]),
        *_review_files(con, paths, domain, as_of, months["reviewer_files"]),
        *_quarantine_days(con, domain, as_of, months["quarantined_values"]),
    ]
    return RetentionPlan(domain, as_of, tuple(removals))


def refuse_if_too_young(plan: RetentionPlan, today: date) -> None:
    """Raise `RetentionRefused` naming the first item younger than the legal minimum."""
    minimum = plan.domain.retention.legal_minimum_months
    young = [r for r in plan.removals if not expired(r.partition_date, minimum, today)]
    if young:
        first = min(young, key=lambda r: r.partition_date)
        raise RetentionRefused(
            f"{plan.domain.name}: refused, nothing removed: {len(young)} items are younger than "
            f"the legal minimum of {minimum} months on {today} (as of {plan.as_of} was asked); "
            f"first: {first.kind} {first.target} of {first.partition_date}"
        )


def refuse_outside(plan: RetentionPlan, paths: HitlPaths) -> None:
    """Raise `RetentionRefused` if a file to remove is outside landing, review or warehouse."""
    roots = (paths.landing, paths.review, paths.warehouse)
    for r in plan.removals:
        if r.kind not in FILE_KINDS:
            continue
        if not any(Path(r.target).resolve().is_relative_to(root) for root in roots):
            raise RetentionRefused(f"{r.target}: outside this installation's data folders")


def _day(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _landing_files(
    paths: HitlPaths, domain: DomainConfig, as_of: date, months: int
) -> Iterator[Removal]:
    root = paths.landing / domain.landing_subdir
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        day = _day(folder.name)
        if day is None or not folder.is_dir() or not expired(day, months, as_of):
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            yield Removal("raw_inputs", "landing_file", str(path), day, 1, _file_sha256(path))


def _stored_partitions(
    paths: HitlPaths, domain: DomainConfig, as_of: date, months: int
) -> Iterator[Removal]:
    """Stored `<stage>/<day>.parquet` files whose schema holds a personal input column."""
    inputs = set(domain.contract.columns) - {domain.case_id, domain.event_time}
    root = paths.warehouse / domain.name
    for stage in sorted(root.iterdir()) if root.is_dir() else []:
        for path in sorted(stage.glob("*.parquet")) if stage.is_dir() else []:
            day = _day(path.stem)
            if day is None or not expired(day, months, as_of):
                continue
            if inputs & set(pl.read_parquet_schema(path)):
                yield Removal(
                    "raw_inputs", "stored_partition", str(path), day, 1, _file_sha256(path)
                )


def _review_files(
    con: duckdb.DuckDBPyConnection,
    paths: HitlPaths,
    domain: DomainConfig,
    as_of: date,
    months: int,
) -> Iterator[Removal]:
    """Batch folders (first-level and escalation) and the verdict files returned for them.

    Paths are taken by name under this home's review folders, never as stored: a copied or
    moved home must not reach into the folders of the one it came from.
    """
    batches = con.execute(
        "SELECT batch_id, folder, partition_date FROM review_batches WHERE domain = ? "
        "UNION ALL SELECT batch_id, folder, partition_date FROM escalation_batches "
        "WHERE domain = ? ORDER BY partition_date, batch_id",
        [domain.name, domain.name],
    ).fetchall()
    days = {batch_id: day for batch_id, _, day in batches}
    for _, folder, day in batches:
        path = _batch_folder_here(paths.review_batches, Path(folder))
        if expired(day, months, as_of) and path is not None:
            yield Removal("reviewer_files", "review_batch", str(path), day, 1)
    returned = con.execute(
        "SELECT file_sha256, batch_id FROM verdict_files ORDER BY received_at"
    ).fetchall()
    for sha, batch_id in returned:
        day = days.get(batch_id)
        if day is None or not expired(day, months, as_of):
            continue  # not this domain's batch (or no batch): its day is unknown here
        for path in sorted(paths.review_archive.glob(f"{sha}.*")):
            yield Removal("reviewer_files", "verdict_file", str(path), day, 1, sha)


def _batch_folder_here(batches: Path, stored: Path) -> Path | None:
    """The batch folder under this home: `<batches>/<person>/<batch>` for an assigned batch,
    `<batches>/<batch>` for an unassigned one (None when neither exists)."""
    for path in (batches / stored.parent.name / stored.name, batches / stored.name):
        if path.is_dir():
            return path
    return None


def _quarantine_days(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, as_of: date, months: int
) -> Iterator[Removal]:
    rows = con.execute(
        "SELECT partition_date, count(*) FROM quarantine WHERE domain = ? AND value IS NOT NULL "
        "GROUP BY ALL ORDER BY partition_date",
        [domain.name],
    ).fetchall()
    for day, count in rows:
        if expired(day, months, as_of):
            target = f"quarantine/{day.isoformat()}"
            yield Removal("quarantined_values", "quarantine_values", target, day, int(count))


def record_and_redact(con: duckdb.DuckDBPyConnection, plan: RetentionPlan, run_id: str) -> None:
    """In one transaction: the plan into `retention_actions`, and the quarantine redactions.

    Recorded before the files go, so a removal is never unrecorded; a crash before the files
    are removed leaves them for the next apply, which re-plans them (insert-or-ignore).
    """
    retention = plan.domain.retention
    months = retention.months()
    now = datetime.now(UTC)
    frame = pl.DataFrame(
        {
            "domain": [plan.domain.name] * len(plan.removals),
            "data_class": [r.data_class for r in plan.removals],
            "kind": [r.kind for r in plan.removals],
            "target": [r.target for r in plan.removals],
            "partition_date": [r.partition_date for r in plan.removals],
            "items": [r.items for r in plan.removals],
            "sha256": [r.sha256 for r in plan.removals],
            "retention_months": [months[r.data_class] for r in plan.removals],
            "legal_minimum_months": [retention.legal_minimum_months] * len(plan.removals),
            "as_of": [plan.as_of] * len(plan.removals),
            "run_id": [run_id] * len(plan.removals),
            "applied_at": [now] * len(plan.removals),
        },
        schema_overrides={"sha256": pl.String, "partition_date": pl.Date, "as_of": pl.Date},
    )
    days = [r.partition_date for r in plan.removals if r.kind == "quarantine_values"]
    with transaction(con):
        con.register("retention_incoming", frame.to_arrow())
        try:
            con.execute(
                "INSERT OR IGNORE INTO retention_actions BY NAME SELECT * FROM retention_incoming"
            )
        finally:
            con.unregister("retention_incoming")
        if days:
            con.execute(
                """
                UPDATE quarantine SET
                    message = CASE WHEN starts_with(message, '''' || value || ''' ')
                        THEN $mark || substr(message, length(value) + 4)
                        ELSE $mark || check_name END,
                    value = NULL
                WHERE domain = $domain AND value IS NOT NULL
                  AND partition_date IN (SELECT unnest($days::DATE[]))
                """,
                {"mark": f"'{REDACTED}' ", "domain": plan.domain.name, "days": days},
            )


def remove_files(plan: RetentionPlan, paths: HitlPaths) -> int:
    """Delete the plan's files and folders (already recorded); return how many were present.

    `refuse_outside` has checked that every path is inside this installation's data folders.
    """
    removed = 0
    for r in plan.removals:
        path = Path(r.target)
        if r.kind not in FILE_KINDS or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed += 1
    for r in plan.removals:  # empty day folders of the landing zone go too
        parent = Path(r.target).parent
        if r.kind == "landing_file" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return removed


def with_store_rewrites(plan: RetentionPlan, paths: HitlPaths, run_id: str) -> RetentionPlan:
    """The plan plus one `store_rewrite` record per database of the home (the rewrite itself
    runs after the audit connection closes: `hitl_gate.audit.store_rewrite.rewrite_stores`).

    Dated by the plan's newest removal (already checked against the legal minimum); the run id
    in the target keeps each apply's rewrite a record of its own.
    """
    from hitl_gate.audit.store_rewrite import database_files

    day = max(r.partition_date for r in plan.removals)
    rewrites = tuple(
        Removal("quarantined_values", REWRITE, f"{p.relative_to(paths.home)} ({run_id})", day, 1)
        for p, _ in database_files(paths.home)
    )
    return RetentionPlan(plan.domain, plan.as_of, plan.removals + rewrites)


@dataclass(frozen=True)
class RetentionResult:
    plan: RetentionPlan
    files_removed: int
    entries_sealed: int


def apply_retention(
    con: duckdb.DuckDBPyConnection,
    paths: HitlPaths,
    domain: DomainConfig,
    as_of: date,
    *,
    today: date,
    run_id: str,
    signing_key: CheckpointSigner | None,
    dry_run: bool = False,
) -> RetentionResult:
    """Plan, refuse if anything is too young, then record, redact, seal and remove files.

    `dry_run` plans and checks only (no key needed). Sealing right after the redaction keeps
    `hitl audit verify` green: the redacted quarantine rows and the retention records are in
    the chain before any file goes.
    """
    from hitl_gate.audit.seal import STEP_OWNED, seal_run

    plan = plan_retention(con, paths, domain, as_of)
    refuse_if_too_young(plan, today)
    refuse_outside(plan, paths)
    if dry_run or not plan.removals:
        return RetentionResult(plan, 0, 0)
    if signing_key is None:
        raise ValueError("apply_retention needs the audit signing key to seal")
    plan = with_store_rewrites(plan, paths, run_id)
    record_and_redact(con, plan, run_id)
    sealed = seal_run(con, run_id, signing_key, paths.checkpoints_dir, owned=STEP_OWNED)
    return RetentionResult(plan, remove_files(plan, paths), sealed.appended)

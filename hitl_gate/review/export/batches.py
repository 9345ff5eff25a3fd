"""Cut the cases routed to human review into signed batches that reviewers can work in.

Each batch is a folder `batches/<assignee>/<batch_id>/` holding `cases.xlsx` (for people),
`cases.csv` (for tools) and `manifest.json` (for us), owner-only (0700 folders, 0600 files) and,
when the domain encrypts, with the cases files as `cases.xlsx.age`/`cases.csv.age` readable only
with the assignee's key. Batch ids are derived from the cases they hold, so a re-run of the same
partition finds its batches already there and leaves them alone: a reviewer may already be
working in them.

Export is in two steps so that files and database agree after any crash: `stage_review_batches`
writes every batch into a hidden temporary folder (never read by intake), the caller commits the
batch rows and assignments, and only then `StagedExport.publish` renames each folder into place.
A crash before the commit leaves only hidden temporary folders (no batch anyone can answer); a
crash after it leaves recorded batches whose folders the next run publishes.

Without an `Assigner` (no registry at hand: format tests and tools) batches are written flat as
`batches/<batch_id>/`, unassigned, and four-eyes cases stay in one batch; intake accepts no
verdict on a batch without an assignment.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.protected import protected_columns
from hitl_gate.review.assignments import (
    FIRST_OPINION,
    SECOND_OPINION,
    SINGLE,
    Assigner,
    Unassigned,
    age_keys,
)
from hitl_gate.review.canonical import (
    CellValue,
    cell_text,
    csv_text,
    export_value,
    neutralise_formula,
    raw_text,
    text_digests,
)
from hitl_gate.review.case_file import (
    CaseFile,
    CaseFiler,
    PolicyNotes,
    evidence_columns,
)
from hitl_gate.review.export.instructions import OTHER_REASON, QueueTerms, instructions
from hitl_gate.review.export.masking import apply_masking, hide_protected, mask_derived
from hitl_gate.review.export.sealing import (
    encrypt_in_place,
    private_folder,
    recipients,
    restrict_files,
)
from hitl_gate.review.export.workbook import write_review_workbook
from hitl_gate.review.manifest import MANIFEST_FORMAT, MANIFEST_NAME, ManifestError, load_manifest
from hitl_gate.review.settings import MaskRule, QueueSettings, ReviewSettings
from hitl_gate.review.signing import sign

VERDICT_COLUMNS = ["verdict", "verdict_reason_code", "rationale", "reviewer_id"]
BATCH_COLUMN = "batch_id"
RULES_COLUMN = "rules_fired"
REASONS_COLUMN = "reasons"
WHY_COLUMN = "why_in_review"
# The risk signals, right of the answers: what the model and the policy made of the case.
SIGNAL_COLUMNS = [
    "pd_percent",
    "risk_band",
    "band_limits",
    "score",
    "four_eyes",
    "qa_sample",
    "route_reason_code",
    WHY_COLUMN,
]
# Columns of whole sentences: wrapped, and this many characters wide.
TEXT_WIDTHS = {REASONS_COLUMN: 70, RULES_COLUMN: 70, WHY_COLUMN: 50, "band_limits": 22}
SUGGESTED_COLUMN = "suggested_action"
FOUR_EYES_COLUMN = "four_eyes"
XLSX_NAME = "cases.xlsx"
CSV_NAME = "cases.csv"
REPLACED_DIR = ".replaced"  # batch folders whose manifest no longer verifies are kept here
STAGING_PREFIX = ".tmp-"  # hidden staging folders: never a batch until renamed
SLOT_SUFFIX = {FIRST_OPINION: "_eyes1", SECOND_OPINION: "_eyes2"}
_INPUT_COLUMNS = [
    "review_queue",
    "review_priority",
    "route_reason_code",
    RULES_COLUMN,
    "reason_texts",
    "pd",
    "score",
    "risk_band",
]


@dataclass(frozen=True)
class BatchExport:
    """What every batch of one export shares: one day's cases of one domain, sent at one time.

    `context` holds the policy and model versions the cases were routed with (signed into each
    manifest); `rule_texts` the wording of the rules that fired (shown to reviewers);
    `settings` the domain's review settings (queues, SLAs, roles, masking); `label` (such as
    "escalated") is added to the queue part of the batch ids.
    """

    domain: DomainConfig
    batches_dir: Path
    key: bytes
    partition_date: date
    created_at: datetime
    context: Mapping[str, str]
    rule_texts: Mapping[str, str] = field(default_factory=dict)
    settings: ReviewSettings | None = None
    notes: PolicyNotes | None = None  # the policy's rules (texts, columns read) and route codes
    label: str = ""
    assigner: Assigner | None = None
    pipeline_recipient: str | None = None  # the pipeline's age key (re-encryption on reassign)


@dataclass(frozen=True)
class ReviewBatch:
    """One exported batch, as recorded in its signed manifest."""

    batch_id: str
    queue: str
    folder: Path
    case_ids: tuple[str, ...]
    created_at: datetime
    due_at: datetime
    manifest_sha256: str
    role: str | None = None
    expires_at: datetime | None = None
    assignee_id: str | None = None
    opinion_slot: int = SINGLE
    first_batch_id: str | None = None  # a second-opinion batch: the first batch it pairs with


def policy_notes_of(export: BatchExport) -> PolicyNotes:
    """The export's policy notes; from the rule texts alone when none were given."""
    return export.notes or PolicyNotes.from_texts(export.rule_texts)


def context_columns(domain: DomainConfig, notes: PolicyNotes) -> list[str]:
    """The locked columns a reviewer sees, case id first; all of them are digested.

    After the case id (and the answer columns, placed by the exporter): the risk signals, the
    model's reasons and the rules that fired, in words; then every model input and every column
    a rule reads; then the domain's other context columns.
    """
    shown = [domain.case_id, *SIGNAL_COLUMNS, REASONS_COLUMN, RULES_COLUMN]
    shown += [*evidence_columns(domain, notes), *domain.review.context_columns]
    return list(dict.fromkeys(shown))


def reason_code_choices(domain: DomainConfig) -> list[str]:
    """Reason codes a reviewer may give: the model's adverse-action codes plus OTHER."""
    codes = [reason.code for reason in domain.model.reason_codes.values()]
    return list(dict.fromkeys([*codes, OTHER_REASON]))


def _queue_slug(queue: object) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", str(queue)).strip("_")
    if queue is None or not slug:
        raise ValueError(f"review_queue {queue!r} cannot name a batch")
    return slug


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _batch_from_manifest(folder: Path, manifest: Mapping[str, Any]) -> ReviewBatch:
    return ReviewBatch(
        batch_id=manifest["batch_id"],
        queue=manifest["queue"],
        folder=folder,
        case_ids=tuple(manifest["case_ids"]),
        created_at=datetime.fromisoformat(manifest["created_at"]),
        due_at=datetime.fromisoformat(manifest["due_at"]),
        manifest_sha256=_sha256_file(folder / MANIFEST_NAME),
        role=manifest.get("role"),
        expires_at=datetime.fromisoformat(manifest["expires_at"])
        if manifest.get("expires_at")
        else None,
        assignee_id=manifest.get("assignee_id"),
        opinion_slot=int(manifest.get("opinion_slot", SINGLE)),
    )


def _existing_batch(folder: Path, key: bytes, case_ids: Sequence[str]) -> ReviewBatch | None:
    """The batch already in `folder` if its manifest verifies and holds exactly `case_ids`."""
    try:
        manifest = load_manifest(folder, key)
    except ManifestError:
        return None
    if sorted(manifest.get("case_ids", [])) != sorted(case_ids):
        return None
    return _batch_from_manifest(folder, manifest)


@dataclass(frozen=True)
class QueuePlan:
    """How one queue's batches are cut and shown: its settings, role and the role's masking."""

    queue: str
    settings: QueueSettings
    review: ReviewSettings | None

    @classmethod
    def of(cls, queue: str, domain: DomainConfig, review: ReviewSettings | None) -> QueuePlan:
        if review is None:
            fallback = QueueSettings(
                role="reviewer",
                sla_hours=domain.review.sla_hours,
                batch_size=domain.review.batch_size,
            )
            return cls(queue, fallback, None)
        return cls(queue, review.queue(queue, domain), review)

    @property
    def role(self) -> str | None:
        return self.settings.role if self.review is not None else None

    @property
    def masking(self) -> dict:
        if self.review is None or self.role is None:
            return {}
        return self.review.masking_for(self.role)

    @property
    def rationale_required_for(self) -> list[str]:
        return list(self.review.rationale_required_for) if self.review else []


def _suggested_actions(chunk: pl.DataFrame, plan: QueuePlan) -> pl.DataFrame:
    """Add the suggested action (from the proposal column) when the settings define one and
    the queue does not hide it (`hide_suggested_action`: against anchoring)."""
    review = plan.review
    if review is None or review.proposal is None or plan.settings.hide_suggested_action:
        return chunk
    proposal = review.proposal
    if proposal.column not in chunk.columns:
        raise ValueError(f"proposal column '{proposal.column}' is not in the cases for review")
    return chunk.with_columns(
        pl.col(proposal.column)
        .cast(pl.String)
        .replace_strict(proposal.actions, default=None, return_dtype=pl.String)
        .alias(SUGGESTED_COLUMN)
    )


# Columns the case file fills in (not read from the cases frame as they are).
_EXPLAINED = {*SIGNAL_COLUMNS, REASONS_COLUMN, RULES_COLUMN}


def case_file_cells(case: CaseFile) -> dict[str, CellValue]:
    """The explained cells of one case's row: risk signals, reasons and rules in words."""
    signals = case.signals
    return {
        "pd_percent": signals.pd_percent,
        "risk_band": signals.risk_band,
        "band_limits": signals.band_limits,
        "score": signals.score,
        "four_eyes": "yes" if signals.four_eyes else "no",
        "qa_sample": "yes" if signals.qa_sample else "no",
        "route_reason_code": signals.route_reason_code,
        WHY_COLUMN: signals.route_reason,
        REASONS_COLUMN: case.reasons_text(),
        RULES_COLUMN: case.rules_text(),
    }


def _terms(plan: QueuePlan) -> QueueTerms:
    return QueueTerms(
        plan.role, plan.settings.sla_hours, plan.rationale_required_for, SUGGESTED_COLUMN
    )


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, CellValue]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(
            [csv_text(neutralise_formula(row.get(name))) for name in header] for row in rows
        )


def _digests(rows: Sequence[Mapping[str, CellValue]], columns: Sequence[str]) -> list[str]:
    """The context digest of each exported row: the function intake applies to returned rows
    (`context_digests` of these rows as a frame of text, which `text_digests` is)."""
    return text_digests(
        {name: [raw_text(row.get(name)) for row in rows] for name in dict.fromkeys(columns)}
    )


@dataclass(frozen=True)
class Slot:
    """Who a batch goes to: the assignee (None: unassigned export) and the opinion it holds."""

    assignee_id: str | None = None
    opinion_slot: int = SINGLE
    first_batch_id: str | None = None


@dataclass(frozen=True)
class StagedBatch:
    """A batch written to a hidden staging folder, and where it becomes visible."""

    staging: Path
    batch: ReviewBatch


def _manifest(
    export: BatchExport,
    plan: QueuePlan,
    batch_id: str,
    rows: Sequence[Mapping[str, CellValue]],
    header: list[str],
    shown: list[str],
    four_eyes: list[str],
    slot: Slot,
    masked: dict[str, str],
) -> dict[str, Any]:
    domain, created_at = export.domain, export.created_at
    case_ids = [cell_text(row[domain.case_id]) for row in rows]
    due_at = created_at + timedelta(hours=plan.settings.sla_hours)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "batch_id": batch_id,
        "domain": domain.name,
        "queue": plan.queue,
        "partition_date": export.partition_date.isoformat(),
        "created_at": created_at.isoformat(),
        "due_at": due_at.isoformat(),
        "context": {str(name): str(value) for name, value in export.context.items()},
        "case_id_column": domain.case_id,
        "case_ids": case_ids,
        "case_digests": dict(zip(case_ids, _digests(rows, shown), strict=True)),
        "columns": header,
        "digest_columns": shown,
        "verdict_columns": VERDICT_COLUMNS,
        "verdicts": list(domain.review.verdicts),
        "reason_codes": reason_code_choices(domain),
    }
    if slot.assignee_id is not None:
        # The assignee and the opinion slot; never the other slot's batch or person (blind).
        manifest["assignee_id"] = slot.assignee_id
        manifest["opinion_slot"] = slot.opinion_slot
    if plan.review is not None:
        manifest.update(
            {
                "role": plan.role,
                "expires_at": (due_at + timedelta(hours=plan.review.grace_hours)).isoformat(),
                "four_eyes_cases": four_eyes,
                "rationale_required_for": plan.rationale_required_for,
                "masking": masked,
                "suggested_actions": {
                    cid: row.get(SUGGESTED_COLUMN)
                    for cid, row in zip(case_ids, rows, strict=True)
                    if row.get(SUGGESTED_COLUMN)
                },
            }
        )
    return manifest


def visible_rules(domain: DomainConfig, plan: QueuePlan) -> dict[str, MaskRule]:
    """How the queue's role sees each column: its masking file's rules, protected attributes
    hidden unless granted, and derived columns hidden with the columns they are computed from.
    The one rule set of batch files and of the portal's case page (inputs and model terms)."""
    visible = hide_protected(plan.masking, protected_columns(domain))
    return mask_derived(visible, domain.features.derived)


def _stage_batch(
    chunk: pl.DataFrame, export: BatchExport, *, batch_id: str, plan: QueuePlan, slot: Slot
) -> StagedBatch:
    """Write the batch into a hidden staging folder beside its final place (same filesystem,
    so publishing is one atomic rename)."""
    domain, key, created_at = export.domain, export.key, export.created_at
    notes = policy_notes_of(export)
    chunk = _suggested_actions(chunk, plan)
    visible = visible_rules(domain, plan)
    masked, dropped = apply_masking(
        chunk, visible, key, protected=[domain.case_id], domain=domain.name
    )
    how = {col: rule.method for col, rule in visible.items() if rule.method != "show"}
    shown = [
        name
        for name in context_columns(domain, notes)
        if name not in dropped and (name in masked.columns or name in _EXPLAINED)
    ]
    if SUGGESTED_COLUMN in masked.columns:
        shown.insert(1, SUGGESTED_COLUMN)
    header = [shown[0], *VERDICT_COLUMNS, *shown[1:], BATCH_COLUMN]
    rows: list[dict[str, CellValue]] = []
    fired: set[str] = set()
    filer = CaseFiler.of(domain, notes, how)
    for case in masked.iter_rows(named=True):
        row: dict[str, CellValue] = {name: export_value(case.get(name)) for name in shown}
        explained = filer.build(case)
        fired.update(rule.id for rule in explained.rules)
        row.update(case_file_cells(explained))
        row.update(dict.fromkeys(VERDICT_COLUMNS))
        row[BATCH_COLUMN] = batch_id
        rows.append(row)
    case_ids = [cell_text(row[domain.case_id]) for row in rows]
    four_eyes = (
        [cid for cid, flag in zip(case_ids, chunk[FOUR_EYES_COLUMN].to_list(), strict=True) if flag]
        if FOUR_EYES_COLUMN in chunk.columns
        else []
    )
    masked_how: dict[str, str] = {
        col: rule.method
        for col, rule in mask_derived(plan.masking, domain.features.derived).items()
        if rule.method != "show" and col in chunk.columns
    }
    manifest = _manifest(export, plan, batch_id, rows, header, shown, four_eyes, slot, masked_how)
    parent = private_folder(
        export.batches_dir / slot.assignee_id if slot.assignee_id else export.batches_dir
    )
    tmp = parent / f"{STAGING_PREFIX}{batch_id}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        write_review_workbook(
            tmp / XLSX_NAME,
            header=header,
            rows=rows,
            answer_columns=VERDICT_COLUMNS,
            choices={
                "verdict": domain.review.verdicts,
                "verdict_reason_code": manifest["reason_codes"],
            },
            instructions=instructions(
                manifest, domain, notes, _terms(plan), BATCH_COLUMN, sorted(fired)
            ),
            text_widths=TEXT_WIDTHS,
            created_at=created_at,
        )
        _write_csv(tmp / CSV_NAME, header, rows)
        restrict_files(tmp)
        manifest["files"] = {name: _sha256_file(tmp / name) for name in (XLSX_NAME, CSV_NAME)}
        if _encrypts(export) and slot.assignee_id is None:
            raise ValueError(
                f"{domain.name} encrypts batches: batch {batch_id} needs an assignee to "
                "encrypt to (export with an Assigner)"
            )
        if _encrypts(export) and slot.assignee_id is not None:
            to = recipients(_assignee_keys(export, slot.assignee_id), export.pipeline_recipient)
            for name in (XLSX_NAME, CSV_NAME):
                encrypt_in_place(tmp / name, to)
            manifest["encrypted"] = {"format": "age", "files": [XLSX_NAME, CSV_NAME]}
        manifest["signature"] = sign(manifest, key)
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
        (tmp / MANIFEST_NAME).write_text(text, encoding="utf-8")
        restrict_files(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    batch = _batch_from_manifest(tmp, manifest)
    batch = replace(batch, folder=parent / batch_id, first_batch_id=slot.first_batch_id)
    return StagedBatch(tmp, batch)


def _encrypts(export: BatchExport) -> bool:
    return export.settings is not None and export.settings.encryption.enabled


def _assignee_keys(export: BatchExport, person_id: str) -> list[str]:
    if export.assigner is None:
        return []
    person = export.assigner.registry.people.get(person_id)
    return age_keys(person, export.created_at) if person else []


def _check_input(cases: pl.DataFrame, domain: DomainConfig, created_at: datetime) -> None:
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware: reviewers are shown a due time")
    needed = [domain.case_id, *domain.review.context_columns, *_INPUT_COLUMNS]
    missing = [name for name in dict.fromkeys(needed) if name not in cases.columns]
    if missing:
        raise ValueError(f"cases for review lack columns: {missing}")
    if cases[domain.case_id].null_count() or cases[domain.case_id].is_duplicated().any():
        raise ValueError(f"cases for review need unique, non-null {domain.case_id}")


def batch_id_for(
    domain: DomainConfig,
    partition_date: date,
    queue: str,
    number: int,
    case_ids: Sequence[str],
    assignee: str | None = None,
) -> str:
    """`<domain>-<YYYYMMDD>-<queue>-<NNN>-<digest8>`: stable for the same cases (and assignee).

    The digest covers the assignee too, so a re-run that gives the same cases to someone else
    (the first person became unavailable) makes a new batch instead of a second holder of one.
    """
    text = "\n".join(sorted(case_ids)) + (f"\n@{assignee}" if assignee else "")
    digest8 = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{domain.name}-{partition_date:%Y%m%d}-{_queue_slug(queue)}-{number:03d}-{digest8}"


@dataclass
class StagedExport:
    """Batches staged but not yet visible, the batches reused as they were, and the cases left
    queued because nobody could be assigned."""

    staged: list[StagedBatch] = field(default_factory=list)
    reused: list[ReviewBatch] = field(default_factory=list)
    unassigned: list[Unassigned] = field(default_factory=list)
    key: bytes = b""

    @property
    def batches(self) -> list[ReviewBatch]:
        """Every batch of the export, at its final place (staged ones once published)."""
        return [*self.reused, *(s.batch for s in self.staged)]

    def assignment_rows(self) -> list[tuple[str, str, str, int]]:
        """(batch, queue, assignee, slot) of every assigned batch, for `review_assignments`."""
        return [
            (b.batch_id, b.queue, b.assignee_id, b.opinion_slot)
            for b in self.batches
            if b.assignee_id is not None
        ]

    def publish(self) -> list[ReviewBatch]:
        """Rename every staged folder into place (atomic; call after the database commit)."""
        for staged in self.staged:
            folder = staged.batch.folder
            try:
                os.rename(staged.staging, folder)
            except OSError:
                shutil.rmtree(staged.staging, ignore_errors=True)
                # A concurrent run may have won the rename with the same cases: ours too.
                if _existing_batch(folder, self.key, staged.batch.case_ids) is None:
                    raise
        return self.batches

    def discard(self) -> None:
        """Remove the staging folders (the database did not record them)."""
        for staged in self.staged:
            shutil.rmtree(staged.staging, ignore_errors=True)


def _reuse_or_set_aside(
    folder: Path, key: bytes, case_ids: Sequence[str], assignee: str | None
) -> ReviewBatch | None:
    """The batch already in `folder` for the same cases and assignee, else None (an
    unverifiable folder is moved aside for inspection, never deleted)."""
    if not folder.exists():
        return None
    existing = _existing_batch(folder, key, case_ids)
    if existing is not None and existing.assignee_id == assignee:
        return existing
    aside = folder.parent / REPLACED_DIR / f"{folder.name}.{secrets.token_hex(4)}"
    private_folder(aside.parent)
    os.rename(folder, aside)
    return None


def _chunks(
    in_queue: pl.DataFrame, plan: QueuePlan, export: BatchExport, out: StagedExport
) -> list[tuple[pl.DataFrame, list[Slot]]]:
    """The queue's cases cut into batches, each with the slots (people) it goes to.

    Without an assigner: batches of the queue's size, unassigned, four-eyes cases mixed in.
    With one: single-review cases and four-eyes cases are cut separately; each batch holds at
    most what its people can still take today; four-eyes batches go to two different people.
    """
    size = plan.settings.batch_size
    if export.assigner is None:
        starts = range(0, in_queue.height, size)
        return [(in_queue.slice(start, size), [Slot()]) for start in starts]
    four_eyes = (
        pl.col(FOUR_EYES_COLUMN).fill_null(False)
        if FOUR_EYES_COLUMN in in_queue.columns
        else pl.lit(False)
    )
    chunks: list[tuple[pl.DataFrame, list[Slot]]] = []
    for slots, part in ((1, in_queue.filter(~four_eyes)), (2, in_queue.filter(four_eyes))):
        start = 0
        while start < part.height:
            choice = export.assigner.choose(
                role=plan.settings.role,
                queue=plan.queue,
                day=export.partition_date,
                fallback_capacity=plan.settings.daily_capacity,
                slots=slots,
                wanted=min(size, part.height - start),
            )
            if isinstance(choice, str):
                left = part.height - start
                out.unassigned.append(Unassigned(plan.queue, export.partition_date, left, choice))
                break
            people, taken = choice
            if slots == 1:
                chunk_slots = [Slot(people[0], SINGLE)]
            else:
                chunk_slots = [Slot(people[0], FIRST_OPINION), Slot(people[1], SECOND_OPINION)]
            chunks.append((part.slice(start, taken), chunk_slots))
            start += taken
    return chunks


def sweep_stale_staging(batches_dir: Path, older_than: timedelta, now: datetime) -> list[Path]:
    """Remove staging folders left by a crashed export (never batches: the database does not
    know them) once older than `older_than`, so younger ones of a running export are kept."""
    if not batches_dir.is_dir():
        return []
    cutoff = (now - older_than).timestamp()
    stale = [
        path
        for parent in (batches_dir, *(p for p in batches_dir.iterdir() if p.is_dir()))
        for path in parent.glob(f"{STAGING_PREFIX}*")
        if path.is_dir() and path.stat().st_mtime < cutoff
    ]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def stage_review_batches(cases: pl.DataFrame, export: BatchExport) -> StagedExport:
    """Stage one batch per queue chunk (and per four-eyes slot); reuse existing ones.

    Cases are ordered by `review_priority` (ascending: lower is more urgent) then case id, so
    the most urgent cases land in batch 001 of their queue. With review settings, each queue's
    batch size, SLA and role come from them and the role's masking policy is applied. Nothing
    is visible until `publish`.
    """
    domain, key = export.domain, export.key
    _check_input(cases, domain, export.created_at)
    out = StagedExport(key=key)
    if cases.is_empty():
        return out
    private_folder(export.batches_dir)
    queues = cases["review_queue"].unique(maintain_order=True).to_list()
    try:
        for queue in sorted(queues, key=lambda q: (q is None, str(q))):
            _queue_slug(queue)
            plan = QueuePlan.of(str(queue), domain, export.settings)
            in_queue = cases.filter(pl.col("review_queue") == queue).sort(
                ["review_priority", domain.case_id], nulls_last=True
            )
            named = f"{queue}_{export.label}" if export.label else str(queue)
            for number, (chunk, slots) in enumerate(_chunks(in_queue, plan, export, out), start=1):
                case_ids = [cell_text(export_value(v)) for v in chunk[domain.case_id].to_list()]
                first_id: str | None = None
                for slot in slots:
                    suffix = SLOT_SUFFIX.get(slot.opinion_slot, "")
                    batch_id = batch_id_for(
                        domain,
                        export.partition_date,
                        named + suffix,
                        number,
                        case_ids,
                        slot.assignee_id,
                    )
                    slot = replace(slot, first_batch_id=first_id)
                    parent = export.batches_dir / (slot.assignee_id or "")
                    reused = _reuse_or_set_aside(parent / batch_id, key, case_ids, slot.assignee_id)
                    if reused is not None:
                        out.reused.append(replace(reused, first_batch_id=first_id))
                    else:
                        out.staged.append(
                            _stage_batch(chunk, export, batch_id=batch_id, plan=plan, slot=slot)
                        )
                    if slot.opinion_slot == FIRST_OPINION:
                        first_id = batch_id
    except BaseException:
        out.discard()
        raise
    return out


def export_review_batches(cases: pl.DataFrame, export: BatchExport) -> list[ReviewBatch]:
    """Stage and publish at once, for callers that record nothing before the files appear.

    The pipeline's stages record the batches and assignments first (`stage_review_batches`,
    then their commit, then `StagedExport.publish`), so a crash never leaves a visible batch
    the database does not know.
    """
    return stage_review_batches(cases, export).publish()

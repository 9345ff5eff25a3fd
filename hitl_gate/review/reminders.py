"""Reminders before a due time: each assignee of a batch with open cases is told once.

Whoever holds a batch (`review_assignments`) with cases still open for them (`supervision.py`)
gets one `due_soon` reminder once the due time is within `remind_hours_before`. The message
names the batch, its queue, how many cases are open and when they are due: nothing about the
cases themselves (no case ids, no applicant data), so it is safe in a mailbox or a shared
folder, and it says no more than the recipient's own batch folder does.

Delivery is pluggable (`Notifier`): a file per reminder under `<home>/notifications/<person>/`
by default (what a laptop has), e-mail over SMTP when the domain's `review.yaml` configures it.
Each reminder is sent once: one already recorded in `review_reminders` (sealed, insert-once) is
never sent again, and the row is written right after a successful send. A crash between the two
can send one reminder twice; the reminder's stable id (the file name, the e-mail's Message-ID)
lets the recipient's side drop the copy. A failed send records nothing and is retried on the
next run.
"""

from __future__ import annotations

import os
import re
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows
from hitl_gate.review.settings import NotificationSettings, SmtpSettings
from hitl_gate.review.supervision import open_batches

DUE_SOON = "due_soon"
FILE, SMTP = "file", "smtp"


class NotifierError(RuntimeError):
    """A reminder that could not be delivered, with the reason."""


@dataclass(frozen=True)
class Reminder:
    """One reminder to one person about one batch: what it says and its stable id."""

    domain: str
    batch_id: str
    assignee_id: str
    queue: str
    open_cases: int
    due_at: datetime
    kind: str = DUE_SOON

    @property
    def reminder_id(self) -> str:
        return f"{self.kind}:{self.batch_id}:{self.assignee_id}"

    @property
    def subject(self) -> str:
        return f"Review due {self.due_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: batch {self.batch_id}"

    @property
    def body(self) -> str:
        due = self.due_at.astimezone(UTC)
        return (
            f"Batch {self.batch_id} (queue {self.queue}) has {self.open_cases} case(s) still "
            f"open for you, due by {due:%Y-%m-%d %H:%M} UTC.\n"
            "Open it from your batch folder or the review portal. Cases not decided by then are "
            "handled as the queue's expiry default says (escalated or held; never approved).\n"
        )


class Notifier(Protocol):
    """Delivers reminders; `channel` names it in `review_reminders`."""

    @property
    def channel(self) -> str: ...

    def send(self, reminder: Reminder) -> None: ...


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


@dataclass(frozen=True)
class FileNotifier:
    """One text file per reminder in `<folder>/<person>/` (owner-only), written atomically."""

    folder: Path
    channel: str = FILE

    def send(self, reminder: Reminder) -> None:
        target_dir = self.folder / _safe(reminder.assignee_id)
        target = target_dir / f"{_safe(reminder.reminder_id)}.txt"
        tmp = target.with_suffix(".tmp")
        try:
            target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(f"Subject: {reminder.subject}\n\n{reminder.body}", encoding="utf-8")
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except OSError as error:
            raise NotifierError(f"{target}: {error}") from error


def email_message(reminder: Reminder, smtp: SmtpSettings) -> EmailMessage:
    """The e-mail of a reminder; refused when the person has no configured address."""
    address = smtp.addresses.get(reminder.assignee_id)
    if not address:
        raise NotifierError(f"no e-mail address configured for {reminder.assignee_id}")
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = address
    message["Subject"] = reminder.subject
    # Stable per reminder: a copy sent again after a crash is recognisably the same message.
    domain_part = smtp.sender.rpartition("@")[2] or "hitl-gate"
    message["Message-ID"] = f"<{_safe(reminder.reminder_id)}@{domain_part}>"
    message.set_content(reminder.body)
    return message


@dataclass(frozen=True)
class SmtpNotifier:
    """E-mail through the configured relay."""

    smtp: SmtpSettings
    channel: str = SMTP

    def send(self, reminder: Reminder) -> None:
        message = email_message(reminder, self.smtp)
        try:
            with smtplib.SMTP(
                self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_seconds
            ) as client:
                if self.smtp.starttls:
                    client.starttls()
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            raise NotifierError(f"SMTP {self.smtp.host}:{self.smtp.port}: {error}") from error


def notifier_for(settings: NotificationSettings, folder: Path) -> Notifier:
    """SMTP when configured, else files under `folder` (`<home>/notifications/`)."""
    if settings.smtp is not None:
        return SmtpNotifier(settings.smtp)
    return FileNotifier(folder)


def due_reminders(
    con: duckdb.DuckDBPyConnection, domain: str, now: datetime, lead: timedelta
) -> list[Reminder]:
    """Reminders owed now: batches with open cases due within `lead`, not yet reminded."""
    batches = open_batches(con, domain)
    sent = {
        str(row[0])
        for row in con.execute(
            "SELECT reminder_id FROM review_reminders WHERE domain = ?", [domain]
        ).fetchall()
    }
    owed = [
        Reminder(domain, row["batch_id"], row["assignee_id"], row["queue"], int(row["open"]),
                 row["due_at"])
        for row in batches.iter_rows(named=True)
        if now <= row["due_at"] <= now + lead
    ]  # fmt: skip
    return [r for r in owed if r.reminder_id not in sent]


@dataclass(frozen=True)
class ReminderRun:
    """What one run sent, and what failed (reminder id -> reason; retried next run)."""

    sent: tuple[str, ...]
    failed: dict[str, str]


def send_reminders(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    notifier: Notifier,
    now: datetime,
    lead: timedelta,
) -> ReminderRun:
    """Send every owed reminder once and record it (see the module docstring)."""
    sent: list[str] = []
    failed: dict[str, str] = {}
    for reminder in due_reminders(con, domain, now, lead):
        try:
            notifier.send(reminder)
        except NotifierError as error:
            failed[reminder.reminder_id] = str(error)
            continue
        _record(con, [reminder], notifier.channel, now)
        sent.append(reminder.reminder_id)
    return ReminderRun(tuple(sent), failed)


def _record(
    con: duckdb.DuckDBPyConnection, reminders: Iterable[Reminder], channel: str, now: datetime
) -> None:
    rows = [
        {"reminder_id": r.reminder_id, "domain": r.domain, "batch_id": r.batch_id,
         "assignee_id": r.assignee_id, "kind": r.kind, "open_cases": r.open_cases,
         "due_at": r.due_at, "channel": channel, "recorded_at": now}
        for r in reminders
    ]  # fmt: skip
    insert_new_rows(con, "review_reminders", pl.DataFrame(rows))

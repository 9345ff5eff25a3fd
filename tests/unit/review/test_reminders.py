"""Reminders before a due time: once per batch and person, nothing about the cases in them,
delivered to a file by default and over SMTP (to a tiny SMTP server in this test) when set."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.review.reminders import (
    FileNotifier,
    NotifierError,
    Reminder,
    SmtpNotifier,
    email_message,
    notifier_for,
    send_reminders,
)
from hitl_gate.review.settings import NotificationSettings, SmtpSettings
from tests.unit.review.supervision_rows import DOMAIN, T0, batch, opinion

LEAD = timedelta(hours=8)
CASES = ["APP-SECRET-1", "APP-SECRET-2", "APP-SECRET-3"]


def workspace(db: Path) -> None:
    with audit_connection(db) as con:
        batch(con, "b-soon", "credit_analyst", CASES, "ana", due_hours=12)
        batch(con, "b-later", "credit_analyst", ["APP-9"], "bob", due_hours=72)
        batch(con, "b-done", "credit_analyst", ["APP-8"], "bob", due_hours=12)
        opinion(con, "APP-SECRET-1", "b-soon", "ana", "approve", hours=1)
        opinion(con, "APP-8", "b-done", "bob", "approve", hours=1)  # nothing open: no reminder


def test_file_reminders_are_sent_once_and_name_no_case(tmp_path: Path) -> None:
    db, folder = tmp_path / "a.duckdb", tmp_path / "home" / "notifications"
    workspace(db)
    notifier = FileNotifier(folder)
    with audit_connection(db) as con:
        early = send_reminders(con, DOMAIN, notifier, T0 + timedelta(hours=1), LEAD)
        first = send_reminders(con, DOMAIN, notifier, T0 + timedelta(hours=5), LEAD)
        again = send_reminders(con, DOMAIN, notifier, T0 + timedelta(hours=6), LEAD)
        recorded = query_frame(con, "SELECT * FROM review_reminders")
    assert early.sent == () and again.sent == ()
    assert first.sent == ("due_soon:b-soon:ana",)
    files = list(folder.rglob("*.txt"))
    assert [f.parent.name for f in files] == ["ana"]
    text = files[0].read_text(encoding="utf-8")
    assert "b-soon" in text and "2 case(s)" in text and "never approved" in text
    assert not any(case in text for case in CASES)
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert recorded.select("assignee_id", "open_cases", "channel").rows() == [("ana", 2, "file")]


def test_the_notifier_is_files_by_default_and_smtp_when_configured(tmp_path: Path) -> None:
    notifier = notifier_for(NotificationSettings(), tmp_path / "notifications")
    assert isinstance(notifier, FileNotifier) and notifier.folder == tmp_path / "notifications"
    smtp = notifier_for(NotificationSettings(smtp=smtp_settings(25)), tmp_path)
    assert isinstance(smtp, SmtpNotifier)


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT; keeps what it received."""

    received: list[bytes]

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                self.wfile.write(b"250 test\r\n")
            elif command == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.received.append(data)  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.TCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.received = []  # type: ignore[attr-defined]
    # poll every 0.05 s: `shutdown` then waits that long, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def smtp_settings(port: int, **addresses: str) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, sender="review@bank.example",
                        addresses=addresses)  # fmt: skip


def test_smtp_reminder_reaches_the_relay_once(
    tmp_path: Path, smtp_server: socketserver.TCPServer
) -> None:
    db = tmp_path / "a.duckdb"
    workspace(db)
    port = smtp_server.server_address[1]
    notifier = SmtpNotifier(smtp_settings(port, ana="ana@bank.example"))
    with audit_connection(db) as con:
        run = send_reminders(con, DOMAIN, notifier, T0 + timedelta(hours=5), LEAD)
        send_reminders(con, DOMAIN, notifier, T0 + timedelta(hours=6), LEAD)
    assert run.sent == ("due_soon:b-soon:ana",)
    (mail,) = smtp_server.received  # type: ignore[attr-defined]
    text = mail.decode()
    assert (
        "To: ana@bank.example" in text and "Message-ID: <due_soon_b-soon_ana@bank.example>" in text
    )
    assert not any(case in text for case in CASES)


def test_a_failed_send_records_nothing_and_is_retried(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    workspace(db)
    closed = SmtpNotifier(smtp_settings(1, ana="ana@bank.example"))  # nothing listens on port 1
    with audit_connection(db) as con:
        run = send_reminders(con, DOMAIN, closed, T0 + timedelta(hours=5), LEAD)
        assert run.sent == () and "SMTP 127.0.0.1:1" in run.failed["due_soon:b-soon:ana"]
        assert con.execute("SELECT count(*) FROM review_reminders").fetchall()[0][0] == 0
        retry = send_reminders(con, DOMAIN, FileNotifier(tmp_path / "n"), T0 + timedelta(hours=5),
                               LEAD)  # fmt: skip
    assert retry.sent == ("due_soon:b-soon:ana",)


def test_a_person_without_an_address_is_refused_not_guessed() -> None:
    reminder = Reminder(DOMAIN, "b1", "ana", "q", 1, T0)
    with pytest.raises(NotifierError, match="no e-mail address configured for ana"):
        email_message(reminder, smtp_settings(25, bob="bob@bank.example"))

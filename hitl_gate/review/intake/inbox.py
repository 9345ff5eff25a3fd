"""Which domain and day each returned verdict file in the inbox belongs to.

The verdict sensors start a review-loop run for the day a file's batch is named after, and the
`reviewer_verdicts` asset takes only its own domain's files: both read the batch id from the
file's first rows and decode the day from it, here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from hitl_gate.core.domain import DomainConfig
from hitl_gate.identity.signatures import signature_path
from hitl_gate.review.intake.received import HASH_FOLDER_PREFIX, pending_files
from hitl_gate.review.intake.verdict_files import batch_partition, peek_batch_id

UNSIGNED_SETTLE_SECONDS = 120


@dataclass(frozen=True)
class ReturnedFile:
    """A verdict file and the batch it answers, as far as its first rows tell.

    `batch_id` is None when no batch id is readable; `day` is the partition day the batch id
    names for this domain (None: unreadable, malformed or another domain's batch).
    """

    path: Path
    batch_id: str | None
    day: date | None
    of_other_domain: bool

    @property
    def signed(self) -> bool:
        """Its detached signature (`<file>.sig`) is beside it."""
        return signature_path(self.path).is_file()

    def intake_key(self) -> str:
        """The file's content hash, with its signature's: one intake per file and signature
        (an unsigned file refused, then returned with its signature, is taken in again)."""
        from hitl_gate.review.intake.signed import read_signature, signature_digest
        from hitl_gate.review.intake.verdict_files import file_sha256

        digest = signature_digest(read_signature(self.path))
        return file_sha256(self.path) + (f"-{digest[:16]}" if digest else "")

    def ready(self, now: datetime) -> bool:
        """Signed, stored by `hitl review ingest`, or unsigned for longer than
        `UNSIGNED_SETTLE_SECONDS`: a reviewer copying
        the file and then its signature is not refused in between; an unsigned file left
        there is taken (and refused, with the reason) once the settle time has passed."""
        if self.signed or self.path.parent.name.startswith(HASH_FOLDER_PREFIX):
            return True  # `receive_file` stores the signature first: the file is complete
        try:
            age = now.timestamp() - self.path.stat().st_mtime
        except OSError:
            return False
        return age >= UNSIGNED_SETTLE_SECONDS


def returned_file(path: Path, domain: DomainConfig) -> ReturnedFile:
    """What `path` answers: its batch id, and the day and domain the batch id names."""
    batch_id = peek_batch_id(path)
    if batch_id is None:
        return ReturnedFile(path, None, None, of_other_domain=False)
    return ReturnedFile(
        path,
        batch_id,
        batch_partition(batch_id, domain),
        of_other_domain=not batch_id.startswith(f"{domain.name}-"),
    )


def returned_files(paths: Iterable[Path], domain: DomainConfig) -> list[ReturnedFile]:
    """`returned_file` of each path, in the given order (the intake order matters)."""
    return [returned_file(path, domain) for path in paths]


def inbox_files(inbox: Path, domain: DomainConfig) -> list[ReturnedFile]:
    """Every verdict file waiting in `inbox`, in name order, with its batch and day."""
    return returned_files(pending_files(inbox), domain)

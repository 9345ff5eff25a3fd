"""How much one returned verdict file may cost: size and row caps, and bounded bookkeeping.

A returned file is untrusted input. Without caps a 50 MB file of junk rows kept the audit
database locked for minutes and wrote one audit entry and one Dagster event per junk row. Over
a cap, a file is refused early with one error; under it, at most `stored_rejections` refused
rows are recorded one by one (then one summary row counts the rest) and at most `messages`
messages are logged per file, so neither the audit log nor the event log grows with the junk.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ROWS = 200_000
DEFAULT_STORED_REJECTIONS = 200
DEFAULT_MESSAGES = 20
MAX_SIGNATURE_BYTES = 16 * 1024  # an armored SSH signature is well under 2 KB


@dataclass(frozen=True)
class IntakeLimits:
    """Caps per returned file (typed; set on the `review` resource of a deployment)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    stored_rejections: int = DEFAULT_STORED_REJECTIONS
    messages: int = DEFAULT_MESSAGES

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_rows, self.stored_rejections, self.messages) < 1:
            raise ValueError(f"intake limits must be positive: {self}")

    def size_refusal(self, name: str, size: int) -> str | None:
        """Why a file of `size` bytes is refused before it is read (None: it is not)."""
        if size <= self.max_bytes:
            return None
        return (
            f"{name}: {size:,} bytes is over the {self.max_bytes:,}-byte cap for a verdict "
            "file; nothing in it was read"
        )

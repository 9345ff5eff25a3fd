"""What a queue does with a case nobody decided by its due time: its configured expiry default.

The default is per queue, explicit in `review.yaml` (`on_expiry`, `hold_for_role`) and checked
at load (`settings.QueueSettings`): `escalate` sends the case to the queue's `escalate_to`,
`hold` keeps it, never executed, for the named role. Nothing else exists: expiry never approves,
declines or otherwise decides a case. The sweep (`intake/sweep.py`) applies it and records each
application in `review_expiry_actions` with the digest of the queue settings in force, so an
audit can tell what the configuration said when the case expired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from hitl_gate.core.digests import canonical_json
from hitl_gate.review.settings import QueueSettings, ReviewSettings

ESCALATE, HOLD = "escalate", "hold"


@dataclass(frozen=True)
class ExpiryDefault:
    """The queue's expiry default as applied: the action, where it goes and the settings digest."""

    action: str
    escalate_to: str | None
    hold_for_role: str | None
    settings_digest: str

    def detail(self, due: str) -> str:
        """The escalation's wording: what expired and what the default did."""
        if self.action == HOLD:
            return (
                f"no final verdict by the due time {due}; held for role '{self.hold_for_role}' "
                "(the queue's expiry default), never executed until that role decides"
            )
        return f"no final verdict by the due time {due}"


def _digest(queue: QueueSettings | None) -> str:
    fields = queue.model_dump(mode="json") if queue is not None else {"on_expiry": ESCALATE}
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def expiry_default(settings: ReviewSettings | None, queue: str) -> ExpiryDefault:
    """The default of `queue`; a queue the settings do not list escalates nowhere (the
    escalation stays open for an administrator, as before expiry defaults existed)."""
    conf = settings.queues.get(queue) if settings is not None else None
    if conf is None:
        return ExpiryDefault(ESCALATE, None, None, _digest(None))
    if conf.on_expiry == HOLD:
        return ExpiryDefault(HOLD, None, conf.hold_for_role, _digest(conf))
    return ExpiryDefault(ESCALATE, conf.escalate_to, None, _digest(conf))


def expiry_actions(
    overdue: pl.DataFrame, settings: ReviewSettings | None, domain: str, now: datetime
) -> pl.DataFrame:
    """`review_expiry_actions` rows of the overdue (batch_id, queue, case_id) rows."""
    defaults = {q: expiry_default(settings, q) for q in overdue["queue"].unique().to_list()}
    return pl.DataFrame(
        {
            "domain": domain,
            "case_id": overdue["case_id"],
            "batch_id": overdue["batch_id"],
            "queue": overdue["queue"],
            "action": [defaults[q].action for q in overdue["queue"]],
            "hold_for_role": [defaults[q].hold_for_role for q in overdue["queue"]],
            "escalate_to": [defaults[q].escalate_to for q in overdue["queue"]],
            "settings_digest": [defaults[q].settings_digest for q in overdue["queue"]],
            "acted_at": now,
        },
        schema_overrides={"hold_for_role": pl.String, "escalate_to": pl.String},
    )

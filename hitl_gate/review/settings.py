"""What reviewers work: roles, queues, SLAs and masking, typed and checked at load.

Who the reviewers are is not here: people, their keys and their roles per domain live in the
people registry (`hitl_gate.identity`, `hitl people add`), and a verdict file is answered by
whoever signed it. This file says which role works which queue.

The settings live in a domain file (`domains/<name>/review.yaml`, named by `review.settings` in
`domain.yaml`) because they change with the organisation, not with the code: a new queue or a
tighter SLA is a reviewed edit of configuration. The rules that decide whether a verdict is
accepted (expiry, rationale rules, four-eyes, escalation) read this one object.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.yaml_files import load_model

EXPIRY_DEFAULTS = ("escalate", "hold")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueSettings(_Strict):
    """One review queue: the role that works it, its SLA, capacity, batch size and escalation."""

    role: str
    sla_hours: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    daily_capacity: int | None = Field(default=None, gt=0)
    escalate_to: str | None = None
    description: str = ""
    # Leave the model's suggested action out of this queue's batches: a reviewer who sees the
    # suggestion before forming a view tends to follow it (anchoring), which turns review into
    # rubber-stamping exactly where an independent judgement is wanted (e.g. four-eyes queues).
    hide_suggested_action: bool = False
    # What happens to a case still without a final verdict at its due time: `escalate` (to
    # `escalate_to`) or `hold` (kept, never executed, for `hold_for_role`). Automatic approval
    # (or any other action) on expiry is refused at load: silence must never become consent.
    on_expiry: str = "escalate"
    hold_for_role: str | None = None
    # Share of each batch made of gold cases (review/gold.py), 0 = off.
    gold_rate: float = Field(default=0.0, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _expiry_is_escalate_or_hold(self) -> QueueSettings:
        if self.on_expiry not in EXPIRY_DEFAULTS:
            raise ValueError(
                f"on_expiry '{self.on_expiry}' is not allowed: an expired case is escalated or "
                f"held for a named role ({' | '.join(EXPIRY_DEFAULTS)}), never approved or "
                "decided automatically"
            )
        if self.on_expiry == "hold" and not self.hold_for_role:
            raise ValueError("on_expiry 'hold' needs hold_for_role: the role the case waits for")
        if self.on_expiry == "escalate" and self.hold_for_role:
            raise ValueError("hold_for_role is only for on_expiry 'hold'")
        return self


class MaskRule(_Strict):
    """How one column is shown to one role.

    show: as is; drop: column removed; generalise: numeric value replaced by the band it falls
    in (`bands` are ascending upper bounds, e.g. income or age bands); partial: only the first
    `keep_start` and last `keep_end` characters kept; pseudonymise: a keyed hash (HMAC with a key
    derived per domain and column), stable across batches so a reviewer can see that two cases
    share a value without learning it, and not open to a dictionary attack as a plain hash
    would be; group: a categorical value replaced by the name of the group listing it (`groups`,
    e.g. state -> region; unlisted values become "other"); suppress: the column kept but empty.

    Pseudonymise only columns with many distinct values (names, employers): a pseudonym of a
    column with few values (a state: about 50) keeps each value's frequency, so ranking the
    pseudonyms by frequency against public figures re-identifies them. Such columns are
    grouped or suppressed instead (docs/review.md, "Pseudonyms and frequency analysis").
    """

    method: Literal["show", "drop", "generalise", "partial", "pseudonymise", "group", "suppress"]
    bands: list[float] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    keep_start: int = Field(default=0, ge=0)
    keep_end: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _bands_for_generalise(self) -> MaskRule:
        ascending = bool(self.bands) and sorted(set(self.bands)) == self.bands
        if self.method == "generalise" and not ascending:
            raise ValueError("generalise needs strictly ascending `bands`")
        if self.method == "group":
            listed = [value for values in self.groups.values() for value in values]
            if not listed or len(set(listed)) != len(listed):
                raise ValueError("group needs `groups` naming each value in exactly one group")
        return self


class EncryptionSettings(_Strict):
    """Batches encrypted to the assignee's registered SSH key (age format, `pyrage`).

    Owner-only folder permissions protect batches on the pipeline's machine; once a folder is
    synchronised to a share or copied to a laptop, only encryption keeps another reviewer (or
    whoever holds the share) from reading it. A person with no ed25519 or RSA key (the key
    types age can encrypt to) is not assigned batches of a domain that encrypts.
    """

    enabled: bool = False


class ProposalSettings(_Strict):
    """The action the model suggests, from one context column, shown to the reviewer.

    A verdict that differs from the suggestion is an override and needs a rationale.
    """

    column: str
    actions: dict[str, str]


class SmtpSettings(_Strict):
    """E-mail reminders through an SMTP relay (the bank's; no credentials kept here: a relay
    that needs them is reached through a local authenticated forwarder)."""

    host: str
    port: int = Field(default=25, gt=0, lt=65536)
    sender: str
    starttls: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0)
    addresses: dict[str, str] = Field(default_factory=dict)  # person id -> mailbox


class NotificationSettings(_Strict):
    """Reminders before a batch's due time (`review/reminders.py`): a file per reminder under
    `<home>/notifications/` by default, e-mail when `smtp` is set."""

    remind_hours_before: int = Field(default=8, gt=0)
    smtp: SmtpSettings | None = None


class ReviewSettings(_Strict):
    """Roles, queues, masking and verdict rules of one domain."""

    roles: dict[str, list[str]]  # role -> queues it may work
    queues: dict[str, QueueSettings]
    default_role: str  # the role of a queue the policy names but this file does not
    grace_hours: int = Field(default=24, ge=0)
    rationale_required_for: list[str] = Field(default_factory=lambda: ["decline"])
    proposal: ProposalSettings | None = None
    masking: dict[str, dict[str, MaskRule]] = Field(default_factory=dict)
    alert_log: str = "alerts.jsonl"
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    @model_validator(mode="after")
    def _references_resolve(self) -> ReviewSettings:
        problems = [
            f"queue '{name}': unknown role '{q.role}'"
            for name, q in self.queues.items()
            if q.role not in self.roles
        ]
        problems += [
            f"queue '{name}': escalates to unknown queue '{q.escalate_to}'"
            for name, q in self.queues.items()
            if q.escalate_to is not None and q.escalate_to not in self.queues
        ]
        problems += [
            f"queue '{name}': holds expired cases for unknown role '{q.hold_for_role}'"
            for name, q in self.queues.items()
            if q.hold_for_role is not None and q.hold_for_role not in self.roles
        ]
        problems += [
            f"masking: unknown role '{role}'" for role in self.masking if role not in self.roles
        ]
        if self.default_role not in self.roles:
            problems.append(f"default_role '{self.default_role}' is not a role")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def queue(self, name: str, domain: DomainConfig) -> QueueSettings:
        """The queue's settings; an unlisted queue gets the domain defaults and `default_role`."""
        if name in self.queues:
            return self.queues[name]
        return QueueSettings(
            role=self.default_role,
            sla_hours=domain.review.sla_hours,
            batch_size=domain.review.batch_size,
        )

    def masking_for(self, role: str) -> dict[str, MaskRule]:
        """Column rules for `role`; columns not named are shown."""
        return dict(self.masking.get(role, {}))


class ReviewSettingsError(ValueError):
    """A review settings file that cannot be loaded, with the file named."""


def load_settings_file(path: Path) -> ReviewSettings:
    """Load and validate one review settings file; errors name the file and the field."""
    return load_model(path, ReviewSettings, "review settings", ReviewSettingsError)


@cache
def _load_cached(path: Path, mtime_ns: int) -> ReviewSettings:
    return load_settings_file(path)


def review_settings(domain: DomainConfig) -> ReviewSettings | None:
    """The domain's review settings, or None when `review.settings` names no file."""
    if not domain.review.settings:
        return None
    path = (domain.source_dir / domain.review.settings).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ReviewSettingsError(f"{path}: cannot read review settings: {exc}") from exc
    return _load_cached(path, mtime)

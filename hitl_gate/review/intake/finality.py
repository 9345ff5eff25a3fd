"""When a valid verdict makes a case final: single review, four eyes, escalation and conflicts.

The validator says whether a row is well-formed and from an authorised reviewer; this module
says what the row means given what is already recorded. It is pure (state in, decisions out) so
every rule is tested without a database, and intake applies the result in one transaction.

- A case without four eyes is final with its first valid verdict.
- A four-eyes case needs two different reviewers (different people with different keys,
  `identity.acts.require_distinct`): the first verdict waits for the second; if
  they agree the case is final, if not it is escalated to the queue's `escalate_to` queue and
  only a reviewer authorised there can decide it.
- A verdict on a case that is already final is refused; if it disagrees it is recorded as a
  conflict escalation to the queue's `escalate_to`, exported there as an escalation batch. The
  first final verdict stands until a reviewer of that queue (who has not answered the case)
  resolves the conflict, with a rationale: before execution the resolution decides the final
  verdict; after it, a differing resolution is a reversal request, never a second execution.
  Anyone else's verdict on a case with an open conflict is refused, naming the queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from hitl_gate.identity.acts import IdentityError, require_distinct
from hitl_gate.identity.registry import Signer
from hitl_gate.review.settings import ReviewSettings

# (person id, queue, queue role) -> None if the person may work the queue, else why not.
MayWork = Callable[[str, str, str | None], str | None]

DISAGREEMENT = "four_eyes_disagreement"
CONFLICT = "conflict"
SLA_BREACH = "sla_breach"
RESOLUTION_STAGE = "conflict_resolution"


def escalation_id(kind: str, domain: str, case_id: str) -> str:
    """One escalation per case and kind: raising it again is a no-op."""
    return f"{kind}:{domain}:{case_id}"


@dataclass(frozen=True)
class CaseState:
    """What is recorded for one case before this file: final verdict, opinions, escalation."""

    final_verdict: str | None = None
    opinions: tuple[tuple[str, str], ...] = ()  # (reviewer_id, verdict)
    escalated_to: str | None = None  # open disagreement escalation: the queue that decides
    escalated: bool = False
    conflict_to: str | None = None  # open conflict escalation: the queue that resolves it
    conflict_resolved_by: str | None = None
    executed_action: str | None = None  # what was executed for the case, if it was
    opinion_keys: tuple[str | None, ...] = ()  # signer fingerprint of each opinion, in order


def resolution_outcome(verdict: str, state: CaseState) -> str:
    """upheld, changed (decides the not yet executed case) or reversal_requested."""
    if state.executed_action is not None:
        return "upheld" if verdict == state.executed_action else "reversal_requested"
    return "upheld" if verdict == state.final_verdict else "changed"


@dataclass
class Outcome:
    """What intake must write for one file's accepted rows."""

    opinions: list[dict[str, Any]] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    resolutions: list[dict[str, Any]] = field(default_factory=list)  # conflicts resolved
    pending_second: int = 0
    # Rows final by the first rule without looking at them one by one (see split_first_single).
    single: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def final_count(self) -> int:
        return len(self.finals) + self.single.height

    @property
    def accepted_count(self) -> int:
        """Rows that took effect: final verdicts and conflict resolutions."""
        return self.final_count + len(self.resolutions)


def split_first_single(
    rows: pl.DataFrame, states: Mapping[str, CaseState]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows final as a single review, the rest): the first rule, applied column-wise.

    A row with no four-eyes requirement on a case with nothing recorded is final, whatever
    else is in the file (the validator has already refused a case twice in one file). Most
    rows are like that; only the rest need `decide`, row by row.
    """
    simple = ~pl.col("four_eyes") & ~pl.col("case_id").is_in(list(states))
    return rows.filter(simple), rows.filter(~simple)


def _escalation_role_ok(
    settings: ReviewSettings | None, may_work: MayWork, reviewer: str, queue: str | None
) -> str | None:
    if settings is None or queue is None:
        return None
    role = settings.queues[queue].role if queue in settings.queues else None
    return may_work(reviewer, queue, role)


def _same_people(first: Signer, second: Signer) -> str | None:
    """Why two opinions do not come from two people (None: they do)."""
    try:
        require_distinct([first, second], "four eyes")
    except IdentityError as error:
        return str(error)
    return None


def decide(
    rows: Sequence[Mapping[str, Any]],
    states: Mapping[str, CaseState],
    *,
    domain: str,
    queue: str,
    settings: ReviewSettings | None,
    file_name: str,
    may_work: MayWork,
) -> Outcome:
    """Sort each accepted row into final, pending second review, escalation or refusal."""
    outcome = Outcome()
    escalate_to = None
    if settings is not None and queue in settings.queues:
        escalate_to = settings.queues[queue].escalate_to

    def refuse(row: Mapping[str, Any], message: str) -> None:
        outcome.rejections.append(
            {
                "row_number": row["row_number"],
                "case_id": row["case_id"],
                "column_name": "verdict",
                "value": row["verdict"],
                "message": f"{file_name} row {row['row_number']}: case {row['case_id']}: {message}",
            }
        )

    def escalate(row: Mapping[str, Any], kind: str, detail: str) -> None:
        outcome.escalations.append(
            {
                "escalation_id": escalation_id(kind, domain, row["case_id"]),
                "domain": domain,
                "kind": kind,
                "case_id": row["case_id"],
                "batch_id": row["batch_id"],
                "queue": queue,
                "escalate_to": escalate_to,
                "detail": detail,
            }
        )

    for row in sorted(rows, key=lambda r: r["row_number"]):
        state = states.get(row["case_id"], CaseState())
        reviewer, verdict = row["reviewer_id"], row["verdict"]
        if state.final_verdict is not None and state.conflict_to is not None:
            problem = _escalation_role_ok(settings, may_work, reviewer, state.conflict_to)
            if queue != state.conflict_to or problem:
                refuse(
                    row,
                    f"has an open conflict over its final '{state.final_verdict}'; only a "
                    f"reviewer of escalation queue '{state.conflict_to}' may resolve it, from "
                    "its escalation batch" + (f" ({problem})" if problem else ""),
                )
            elif reviewer in {r for r, _ in state.opinions}:
                refuse(row, "a reviewer who already answered this case cannot resolve its conflict")
            elif not (row.get("rationale") or "").strip():
                refuse(row, "a rationale is required to resolve a conflict")
            else:
                conflict = escalation_id(CONFLICT, domain, row["case_id"])
                outcome.opinions.append({**row, "stage": RESOLUTION_STAGE})
                outcome.resolved.append(conflict)
                outcome.resolutions.append(
                    {
                        **row,
                        "escalation_id": conflict,
                        "prior_verdict": state.final_verdict,
                        "executed_action": state.executed_action,
                        "outcome": resolution_outcome(verdict, state),
                    }
                )
            continue
        if state.final_verdict is not None and state.conflict_resolved_by is not None:
            refuse(
                row,
                f"its conflict was resolved by {state.conflict_resolved_by}; the resolution stands",
            )
            continue
        if state.final_verdict is not None:
            if verdict != state.final_verdict:
                escalate(
                    row,
                    CONFLICT,
                    f"{reviewer} answered '{verdict}' after the final '{state.final_verdict}'",
                )
                refuse(row, f"already final ('{state.final_verdict}'); recorded as a conflict")
            else:
                refuse(row, "already has a final verdict; the first verdict stands")
            continue
        if state.escalated:
            problem = _escalation_role_ok(settings, may_work, reviewer, state.escalated_to)
            if problem or reviewer in {r for r, _ in state.opinions}:
                refuse(
                    row,
                    "escalated after a four-eyes disagreement; a reviewer of queue "
                    f"'{state.escalated_to}' who has not reviewed it must decide"
                    + (f" ({problem})" if problem else ""),
                )
                continue
            outcome.opinions.append({**row, "stage": "escalation"})
            outcome.finals.append(dict(row))
            outcome.resolved.append(escalation_id(DISAGREEMENT, domain, row["case_id"]))
            continue
        if not row["four_eyes"]:
            outcome.opinions.append({**row, "stage": "single"})
            outcome.finals.append(dict(row))
            continue
        if not state.opinions:
            outcome.opinions.append({**row, "stage": "first"})
            outcome.pending_second += 1
            continue
        first_reviewer, first_verdict = state.opinions[0]
        first_key = state.opinion_keys[0] if state.opinion_keys else None
        same = _same_people(
            Signer(first_reviewer, first_key or f"unsigned:{first_reviewer}"),
            Signer(reviewer, row.get("signer_fingerprint") or f"unsigned:{reviewer}"),
        )
        if same is not None:
            refuse(row, f"four eyes: the second verdict must come from another reviewer ({same})")
            continue
        outcome.opinions.append({**row, "stage": "second"})
        if verdict == first_verdict:
            outcome.finals.append(dict(row))
        else:
            escalate(
                row,
                DISAGREEMENT,
                f"{first_reviewer} answered '{first_verdict}', {reviewer} answered '{verdict}'",
            )
    return outcome

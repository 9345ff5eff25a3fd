"""The workbook's instructions sheet: what to do, and the meaning of every column and code.

A reviewer meets codes in four places (the model's reason codes, the policy's rule ids, the route
reason codes and the answer values); each is spelled out here so no code needs looking up
elsewhere. Every row is (label, text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.case_file import HIDDEN, PolicyNotes, band_limits

OTHER_REASON = "OTHER"


@dataclass(frozen=True)
class QueueTerms:
    """What the queue's settings say about a batch: its role, SLA and rationale rules."""

    role: str | None
    sla_hours: int
    rationale_required_for: Sequence[str]
    suggested_column: str


def _batch_lines(manifest: Mapping[str, Any], terms: QueueTerms) -> list[tuple[str, str]]:
    due = datetime.fromisoformat(manifest["due_at"]).astimezone(UTC)
    lines = [
        ("Batch", manifest["batch_id"]),
        ("Queue", manifest["queue"] + (f" (role: {terms.role})" if terms.role else "")),
        ("Cases", str(len(manifest["case_ids"]))),
        ("Due by", f"{due:%Y-%m-%d %H:%M} UTC (SLA {terms.sla_hours} hours)"),
    ]
    if manifest.get("expires_at"):
        expires = datetime.fromisoformat(manifest["expires_at"]).astimezone(UTC)
        lines.append(
            ("Closes", f"{expires:%Y-%m-%d %H:%M} UTC: verdicts returned later are refused.")
        )
    return lines


def _answer_lines(
    manifest: Mapping[str, Any], domain: DomainConfig, terms: QueueTerms
) -> list[tuple[str, str]]:
    verdicts = ", ".join(domain.review.verdicts)
    rationale = "A sentence in your own words on why; it is kept in the audit trail."
    if terms.rationale_required_for or manifest.get("suggested_actions"):
        needed = ", ".join(terms.rationale_required_for) or "no verdict"
        rationale += (
            f" Required for every {needed} verdict and whenever your verdict differs from the "
            f"'{terms.suggested_column}' column."
        )
    return [
        (
            "What to do",
            "Work on the 'cases' sheet, one row per case. The case id stays in view on the "
            "left; the four yellow answer columns are right beside it. Grey columns are the "
            "case as the pipeline saw it and are locked: do not edit them, an edited row is "
            "rejected on return. Do not type formulas.",
        ),
        ("Answer columns", ""),
        ("verdict", f"Required. Choose from the drop-down: {verdicts}."),
        (
            "verdict_reason_code",
            "The main reason for your verdict, from the drop-down: one of the reason codes "
            f"below, or {OTHER_REASON}. The 'reasons' column shows the model's reasons.",
        ),
        ("rationale", rationale),
        ("reviewer_id", "Required. Your registered reviewer id, on every row you decide."),
    ]


def _column_lines(domain: DomainConfig, batch_column: str) -> list[tuple[str, str]]:
    limits = "; ".join(f"{band}: {text}" for band, text in band_limits(domain.model.bands).items())
    return [
        ("Case columns", ""),
        (
            "pd_percent",
            "The model's predicted probability of a bad outcome, in percent (3.5 means 3.5%).",
        ),
        ("risk_band", f"The band the PD falls in. Bands: {limits}."),
        ("band_limits", "The PD limits of the case's band."),
        ("score", "Points score: higher is safer (600 at even odds, 20 points per doubling)."),
        (
            "four_eyes",
            "yes: two reviewers decide this case independently; neither sees the other's answer.",
        ),
        ("qa_sample", "yes: a quality sample of a case the policy would have decided itself."),
        ("route_reason_code", "Why the policy sent the case to review (codes below)."),
        ("why_in_review", "The route reason code in words."),
        (
            "reasons",
            "The model's reasons, strongest first: code, text and [the value behind it]. A "
            "case without a model reason says why.",
        ),
        (
            "rules_fired",
            "Every policy rule that fired: id, plain text and [the values of the columns it "
            "reads].",
        ),
        (
            "other columns",
            "Every model input and every column a policy rule reads, then the application's "
            f"context; '{batch_column}' (last) names this batch.",
        ),
    ]


def _masking_lines(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not manifest.get("masking"):
        return []
    masked = ", ".join(f"{col} ({how})" for col, how in sorted(manifest["masking"].items()))
    return [
        (
            "Masked for your role",
            f"{masked}. A banded value shows the band it falls in (e.g. 50,000 - < 75,000); "
            f"a dropped or suppressed value, and any ratio computed from one, is '{HIDDEN}' "
            "or absent.",
        )
    ]


def _code_lines(
    domain: DomainConfig, notes: PolicyNotes, fired: Sequence[str]
) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = [("Reason codes (model)", "")]
    lines += [
        (rc.code, f"{rc.text} (input: {feature})")
        for feature, rc in domain.model.reason_codes.items()
    ]
    lines.append((OTHER_REASON, "None of the above: explain in the rationale."))
    lines.append(("Rules (policy)", ""))
    for rule in notes.rules.values():
        reads = f" Reads: {', '.join(rule.columns)}." if rule.columns else ""
        lines.append((rule.id, f"{rule.text}{reads}"))
    lines += [(rid, "(rule text not supplied)") for rid in fired if rid not in notes.rules]
    if notes.route_codes:
        lines.append(("Route reason codes", ""))
        lines += [(code, text) for code, text in notes.route_codes.items()]
    return lines


def instructions(
    manifest: Mapping[str, Any],
    domain: DomainConfig,
    notes: PolicyNotes,
    terms: QueueTerms,
    batch_column: str,
    fired: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """The rows of the instructions sheet of one batch; `fired`: the rule ids its cases show."""
    lines = _batch_lines(manifest, terms) + _answer_lines(manifest, domain, terms)
    if manifest.get("assignee_id"):
        lines.append(
            (
                "Assigned to",
                f"{manifest['assignee_id']}. Only this person's signature on the returned file "
                "is accepted (ssh-keygen -Y sign -n hitl-gate-verdicts, see README).",
            )
        )
    if manifest.get("four_eyes_cases"):
        lines.append(
            (
                "Four eyes",
                f"{len(manifest['four_eyes_cases'])} case(s) are decided by two different "
                "reviewers independently; neither sees the other's verdict or name. Cases: "
                + ", ".join(manifest["four_eyes_cases"]),
            )
        )
    lines += _masking_lines(manifest)
    lines.append(
        (
            "Return",
            "Save as .xlsx (keep the file name if you can) and put the file into the "
            "inbox/ folder next to batches/. Rows left blank count as not yet reviewed; you may "
            "return the batch again later with more rows filled.",
        )
    )
    return lines + _column_lines(domain, batch_column) + _code_lines(domain, notes, fired)

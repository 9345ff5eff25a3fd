"""One case as a reviewer needs it to decide: evidence, model reasons, rules and risk signals.

The review workbook, its CSV copy and the review portal all show a case through `build_case_file`,
so a reviewer reads the same explanation whichever surface they open. It works on the case as
the reviewer's role may see it (after masking): a masked value appears as its band or pseudonym,
a dropped column as "hidden for your role", never as the raw value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.protected import expression_columns

if TYPE_CHECKING:
    from policies.model import Policy

# Model outputs a rule may read; shown as risk signals, not repeated as evidence.
SCORE_COLUMNS = ("pd", "score", "risk_band")
HIDDEN = "hidden for your role"
NOT_GIVEN = "not in the case data"
DEFAULT_ROUTE_TEXT = (
    "No rule recognised the case, so the policy's fail-safe default sends it to a person."
)
QA_ROUTE_TEXT = (
    "Quality sample: the policy would have decided this case automatically; it is reviewed to "
    "measure how often automatic decisions are wrong. Judge it on its merits."
)
HALT_ROUTE_TEXT = (
    "Automation is halted (kill switch): every automatic decision goes to a person until it "
    "is resumed."
)


@dataclass(frozen=True)
class RuleNote:
    """A policy rule as a reviewer reads it: its plain text and the case columns it reads."""

    id: str
    text: str
    columns: tuple[str, ...] = ()
    reason_code: str | None = None


@dataclass(frozen=True)
class PolicyNotes:
    """The wording of a policy for reviewers: its rules and every route reason code."""

    rules: Mapping[str, RuleNote]
    route_codes: Mapping[str, str]  # route reason code -> what it means

    @classmethod
    def from_texts(cls, rule_texts: Mapping[str, str]) -> PolicyNotes:
        """Notes from rule texts alone (no columns known): for callers without the policy."""
        return cls({rid: RuleNote(rid, text) for rid, text in rule_texts.items()}, {})

    def read_columns(self) -> list[str]:
        """Every case column some rule reads, in rule order (model outputs excluded)."""
        names = [c for rule in self.rules.values() for c in rule.columns]
        return [c for c in dict.fromkeys(names) if c not in SCORE_COLUMNS]


def policy_notes(policy: Policy) -> PolicyNotes:
    """The reviewer's notes of `policy`: rule texts, the columns each reads, route codes."""
    from policies.decide import HALT_REASON_CODE
    from policies.qa import QA_REASON_CODE

    rules = {
        rule.id: RuleNote(
            rule.id, rule.text, tuple(sorted(expression_columns(rule.when))), rule.reason_code
        )
        for rule in policy.rules
    }
    codes: dict[str, str] = {}
    for rule in policy.rules:
        codes.setdefault(rule.reason_code, f"{rule.id}: {rule.text}")
    codes.setdefault(policy.default_reason_code, DEFAULT_ROUTE_TEXT)
    codes[QA_REASON_CODE] = QA_ROUTE_TEXT
    codes[HALT_REASON_CODE] = HALT_ROUTE_TEXT
    return PolicyNotes(rules, codes)


@dataclass(frozen=True)
class Reason:
    """One model reason: code, text, and the (masked) value of the feature behind it."""

    code: str
    text: str
    feature: str | None
    value: str

    def line(self) -> str:
        behind = f" [{self.feature} = {self.value}]" if self.feature else ""
        return f"{self.code}: {self.text}{behind}" if self.code else f"{self.text}{behind}"


@dataclass(frozen=True)
class FiredRule:
    """A rule that fired for the case, in plain text, with the values of the columns it read."""

    id: str
    text: str
    values: tuple[tuple[str, str], ...]

    def line(self) -> str:
        read = "; ".join(f"{name} = {value}" for name, value in self.values)
        return f"{self.id}: {self.text}" + (f" [{read}]" if read else "")


@dataclass(frozen=True)
class RiskSignals:
    """PD as a percentage, the band with its limits, and the four-eyes and QA-sample flags."""

    pd_percent: float | None
    risk_band: str | None
    band_limits: str
    score: int | None
    four_eyes: bool
    qa_sample: bool
    route_reason_code: str | None
    route_reason: str


@dataclass(frozen=True)
class CaseFile:
    """Everything a reviewer is shown about one case, each value as their role may see it."""

    case_id: str
    evidence: tuple[tuple[str, str], ...]  # model inputs and columns rules read, with values
    reasons: tuple[Reason, ...]
    no_reason_why: str | None  # why the model gives no reason (None when it gives one)
    rules: tuple[FiredRule, ...]
    signals: RiskSignals

    def reasons_text(self) -> str:
        """The reasons, one per line; or why there are none."""
        if not self.reasons:
            return f"No model reason: {self.no_reason_why}"
        return "\n".join(reason.line() for reason in self.reasons)

    def rules_text(self) -> str:
        """The fired rules, one per line."""
        return "\n".join(rule.line() for rule in self.rules) or "(no rule fired)"


def format_value(value: object) -> str:
    """A value as a reviewer reads it: ratios to 4 significant digits, amounts with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def band_limits(bands: Mapping[str, float]) -> dict[str, str]:
    """Each risk band with its PD limits (a band holds PDs above the previous bound, up to its
    own; the last band takes every higher PD, as `models.scoring.band_index` assigns them)."""
    names = list(bands)
    limits: dict[str, str] = {}
    for index, name in enumerate(names):
        low = bands[names[index - 1]] if index else None
        high = bands[name]
        if index == len(names) - 1:
            limits[name] = f"PD over {_percent(low)}" if low is not None else "any PD"
        elif low is None:
            limits[name] = f"PD up to {_percent(high)}"
        else:
            limits[name] = f"PD over {_percent(low)} up to {_percent(high)}"
    return limits


def evidence_columns(domain: DomainConfig, notes: PolicyNotes) -> list[str]:
    """Every model input, then every other column a policy rule reads: what a reviewer must see."""
    names = [*domain.model.features, *notes.read_columns()]
    return [c for c in dict.fromkeys(names) if c not in SCORE_COLUMNS and c != domain.case_id]


_MASK_NOTES = {
    "generalise": "band",
    "group": "group",
    "partial": "partly hidden",
    "pseudonymise": "pseudonym",
}


def _shown(case: Mapping[str, object], name: str, masked: Mapping[str, str]) -> str:
    """The value of `name` as the role sees it; a masked value says how it was masked."""
    how = masked.get(name, "show")
    if how in ("drop", "suppress"):
        return HIDDEN
    if name not in case:
        return NOT_GIVEN
    text = format_value(case[name])
    note = _MASK_NOTES.get(how)
    return f"{text} ({note})" if note and case[name] is not None else text


def _listed(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _no_reason_why(case: Mapping[str, object], domain: DomainConfig, route_reason: str) -> str:
    """Why the model names no reason: the case was not scored, or nothing in it raised the risk."""
    if case.get("pd") is None:
        missing = [f for f in domain.model.features if f in case and case[f] is None]
        which = f" (missing: {', '.join(missing)})" if missing else ""
        return f"the case has no score{which}; it is here for the rule below, not for the model."
    return (
        "no input raises this applicant's predicted risk above the average applicant's, so "
        "the model has nothing adverse to cite. The case is here because: " + route_reason
    )


@dataclass(frozen=True)
class CaseFiler:
    """Builds case files for one domain, policy and role; the lookups are made once."""

    domain: DomainConfig
    notes: PolicyNotes
    masked: Mapping[str, str]
    evidence: tuple[str, ...]
    limits: Mapping[str, str]
    feature_of: Mapping[str, tuple[str, str]]  # reason code -> (feature, text)
    code_of: Mapping[str, str]  # reason text -> code

    @classmethod
    def of(
        cls, domain: DomainConfig, notes: PolicyNotes, masked: Mapping[str, str] | None = None
    ) -> CaseFiler:
        """`masked`: how each masked column of the role was changed (column -> method)."""
        codes = domain.model.reason_codes
        return cls(
            domain,
            notes,
            dict(masked or {}),
            tuple(evidence_columns(domain, notes)),
            band_limits(domain.model.bands),
            {rc.code: (name, rc.text) for name, rc in codes.items()},
            {rc.text: rc.code for rc in codes.values()},
        )

    def reasons(self, case: Mapping[str, object]) -> tuple[Reason, ...]:
        """The model's reasons of the case, each with the value behind it."""
        listed = [(c, "") for c in _listed(case.get("reason_codes")) if c]
        if not listed:  # rows that carry the texts only
            listed = [(self.code_of.get(t, ""), t) for t in _listed(case.get("reason_texts")) if t]
        reasons = []
        for code, given in listed:
            feature, text = self.feature_of.get(code, (None, given or code))
            value = _shown(case, feature, self.masked) if feature else ""
            reasons.append(Reason(code, text, feature, value))
        return tuple(reasons)

    def signals(self, case: Mapping[str, object]) -> RiskSignals:
        """PD in percent, the band and its limits, the flags and the route reason."""
        band, code = case.get("risk_band"), case.get("route_reason_code")
        route_reason = self.notes.route_codes.get(str(code), "") if code is not None else ""
        if not route_reason:
            route_reason = f"route reason {code}" if code is not None else "not recorded"
        pd_value, score = case.get("pd"), case.get("score")
        return RiskSignals(
            pd_percent=round(float(pd_value) * 100, 2)
            if isinstance(pd_value, int | float)
            else None,
            risk_band=str(band) if band is not None else None,
            band_limits=self.limits.get(str(band), "no band") if band is not None else "no band",
            score=int(score) if isinstance(score, int | float) else None,
            four_eyes=bool(case.get("four_eyes") or False),
            qa_sample=bool(case.get("qa_sample") or False),
            route_reason_code=str(code) if code is not None else None,
            route_reason=route_reason,
        )

    def build(self, case: Mapping[str, object]) -> CaseFile:
        """The case file of one (already masked) case row: dropped columns are absent."""
        masked = self.masked
        evidence = tuple(
            (name, _shown(case, name, masked))
            for name in self.evidence
            if name in case or name in masked
        )
        fired = []
        for rule_id in _listed(case.get("rules_fired")):
            note = self.notes.rules.get(rule_id, RuleNote(rule_id, "(rule text not supplied)"))
            values = tuple((c, _signal_value(case, c, masked)) for c in note.columns)
            fired.append(FiredRule(rule_id, note.text, values))
        signals = self.signals(case)
        reasons = self.reasons(case)
        why = None if reasons else _no_reason_why(case, self.domain, signals.route_reason)
        return CaseFile(
            case_id=str(case.get(self.domain.case_id)),
            evidence=evidence,
            reasons=reasons,
            no_reason_why=why,
            rules=tuple(fired),
            signals=signals,
        )


def build_case_file(
    case: Mapping[str, object],
    domain: DomainConfig,
    notes: PolicyNotes,
    masked: Mapping[str, str] | None = None,
) -> CaseFile:
    """The case file of one (already masked) case row (for many rows, reuse a `CaseFiler`).

    `case` is the row as the reviewer's role may see it: dropped columns are absent (shown as
    hidden), `masked` names how each masked column was changed (column -> method).
    """
    return CaseFiler.of(domain, notes, masked).build(case)


def _signal_value(case: Mapping[str, object], name: str, masked: Mapping[str, str]) -> str:
    """A rule's column value; PD as a percentage, since rules are written in its terms too."""
    value = case.get(name)
    if name == "pd" and isinstance(value, int | float):
        return f"{value * 100:.2f}%"
    return _shown(case, name, masked)

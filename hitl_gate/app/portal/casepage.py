"""What a case page shows: the exported (masked) inputs, model reasoning, rules, risk signals,
reason codes with their texts, and earlier opinions unless the review is blind."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb

from hitl_gate.app.portal.contributions import Contribution, ContributionSource
from hitl_gate.app.portal.work import BatchFiles, QueueItem, is_blind
from hitl_gate.core.domain import DomainConfig
from hitl_gate.review.export.batches import (
    BATCH_COLUMN,
    REASONS_COLUMN,
    RULES_COLUMN,
    SIGNAL_COLUMNS,
    SUGGESTED_COLUMN,
    VERDICT_COLUMNS,
    QueuePlan,
    visible_rules,
)
from hitl_gate.review.settings import review_settings

_DECISION_SQL = (
    "SELECT reason_codes, rules_fired, policy_version, model_version, policy_digest, "
    "partition_date FROM decisions WHERE domain = ? AND case_id = ?"
)

_OPINION_FIELDS = ("reviewer_id", "stage", "verdict", "reason", "rationale", "at")


@dataclass(frozen=True)
class CaseView:
    """Everything the case page renders, already chosen for the viewer."""

    item: QueueItem
    inputs: list[tuple[str, str]]
    model: list[tuple[str, str]]
    reasons: list[tuple[str, str]]  # (code, text) of the model's reasons for this case
    rules: list[tuple[str, str]]  # (rule id, its text)
    reason_choices: list[tuple[str, str]]  # codes a reviewer may give, with texts
    verdicts: list[str]
    suggested: str | None
    rationale_required_for: list[str]
    blind: bool
    opinions: list[dict[str, Any]]
    exported_reasons: str
    # Every model input's term of the logit, largest first ([]: not available for this case).
    contributions: list[Contribution] = field(default_factory=list)


@dataclass
class RuleTexts:
    """The wording of the rules of the policy that routed a case, parsed once per policy digest
    (`policy_versions` keeps every policy text used); without a digest, the policy in force."""

    _by_digest: dict[str, dict[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(
        self, con: duckdb.DuckDBPyConnection, domain: DomainConfig, digest: str | None
    ) -> dict[str, str]:
        key = digest or f"in force:{domain.name}"
        with self._lock:
            if key in self._by_digest:
                return self._by_digest[key]
        texts = _parse_rule_texts(con, domain, digest)
        with self._lock:
            if len(self._by_digest) > MAX_POLICIES or digest is None:
                self._by_digest.pop(f"in force:{domain.name}", None)
            if digest is not None:
                self._by_digest[key] = texts
        return texts


MAX_POLICIES = 64


def _parse_rule_texts(
    con: duckdb.DuckDBPyConnection, domain: DomainConfig, digest: str | None
) -> dict[str, str]:
    try:
        if digest:
            from policies.model import load_policy_text

            row = con.execute(
                "SELECT policy_text FROM policy_versions WHERE policy_digest = ?", [digest]
            ).fetchall()
            if row:
                policy = load_policy_text(str(row[0][0]), f"policy {digest[:12]}")
                return {rule.id: rule.text for rule in policy.rules}
        from hitl_gate.review.export.days import rule_texts_in_force

        return rule_texts_in_force(con, domain)
    except Exception:  # noqa: BLE001 - no readable policy: the rule ids alone are shown
        return {}


def masked_inputs(domain: DomainConfig, queue: str) -> set[str]:
    """The columns the queue's role sees masked, by the rules its batch files were cut with."""
    plan = QueuePlan.of(queue, domain, review_settings(domain))
    return {name for name, rule in visible_rules(domain, plan).items() if rule.method != "show"}


def case_view(
    con: duckdb.DuckDBPyConnection,
    item: QueueItem,
    batch: BatchFiles,
    domain: DomainConfig,
    rule_texts: RuleTexts,
    contributions: ContributionSource | None = None,
) -> CaseView:
    """The page of one case of the viewer's queue."""
    row = batch.row_of(item.case_id)
    hidden = {BATCH_COLUMN, *VERDICT_COLUMNS, *SIGNAL_COLUMNS, RULES_COLUMN, REASONS_COLUMN}
    hidden |= {SUGGESTED_COLUMN, str(batch.manifest["case_id_column"])}
    inputs = [(name, value) for name, value in row.items() if name not in hidden]
    model = [(name, row[name]) for name in SIGNAL_COLUMNS if name in row]
    decision = con.execute(_DECISION_SQL, [item.domain, item.case_id]).fetchall()
    texts = {r.code: r.text for r in domain.model.reason_codes.values()}
    reasons: list[tuple[str, str]] = []
    digest: str | None = None
    fired: list[str] = [r for r in row.get(RULES_COLUMN, "").split(",") if r.strip()]
    terms: list[Contribution] = []
    if decision:
        codes, rules_fired, policy, model_version, digest, day = decision[0]
        if contributions is not None:
            masked = masked_inputs(domain, str(batch.manifest["queue"]))
            terms = contributions.of_case(
                domain, item.case_id, day, str(model_version or ""), masked
            )
        reasons = [(c, texts.get(c, "")) for c in codes or []]
        fired = list(rules_fired or fired)
        model += [
            ("policy_version", str(policy or "")),
            ("model_version", str(model_version or "")),
        ]
    texts_of_rules = rule_texts.of(con, domain, digest) if fired else {}
    choices = [(code, texts.get(code, "")) for code in batch.manifest.get("reason_codes", [])]
    blind = is_blind(item, batch.manifest)
    opinions: list[dict[str, Any]] = []
    if not blind:
        opinions = [
            dict(
                zip(
                    ("reviewer_id", "stage", "verdict", "reason", "rationale", "at"), o, strict=True
                )
            )
            for o in con.execute(
                "SELECT reviewer_id, stage, verdict, verdict_reason_code, rationale, received_at "
                "FROM verdict_opinions WHERE domain = ? AND case_id = ? ORDER BY received_at",
                [item.domain, item.case_id],
            ).fetchall()
        ]
    return CaseView(
        item=item,
        inputs=inputs,
        model=model,
        reasons=reasons,
        rules=[(r.strip(), texts_of_rules.get(r.strip(), "")) for r in fired],
        reason_choices=choices,
        verdicts=list(batch.manifest.get("verdicts", domain.review.verdicts)),
        suggested=row.get(SUGGESTED_COLUMN) or None,
        rationale_required_for=list(batch.manifest.get("rationale_required_for", [])),
        blind=blind,
        opinions=opinions,
        exported_reasons=row.get(REASONS_COLUMN, ""),
        contributions=terms,
    )

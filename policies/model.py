"""The typed policy: rules, outcomes and the checks that need no case data.

A policy is a reviewed, versioned YAML file; the `Policy` keeps its exact text and SHA-256
digest so every decision row can name the bytes that routed it. Checks that only need the file
(outcomes, reason codes, queues, duplicate ids, SQL that does not parse) live here so a bad
file fails at load time; checks against case columns live in `policies.engine`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from hitl_gate.core.yaml_files import parse_yaml
from policies.expressions import parse_problem

AUTO_APPROVE = "auto_approve"
AUTO_DECLINE = "auto_decline"
HUMAN_REVIEW = "human_review"
# Outcomes in precedence order: a fired decline beats a fired review beats a fired approve.
PRECEDENCE: tuple[str, ...] = (AUTO_DECLINE, HUMAN_REVIEW, AUTO_APPROVE)
# The routing bitmask is one UInt64, so at most 64 rules per policy.
MAX_RULES = 64


class PolicyError(ValueError):
    """A policy that cannot be loaded or applied; the message names the file and rule id."""


@dataclass(frozen=True)
class Rule:
    """One routing rule: when `when` holds for a case, it fires and proposes `outcome`."""

    id: str
    text: str
    when: str
    outcome: str
    reason_code: str
    queue: str | None = None
    priority: int | None = None
    four_eyes: bool = False


@dataclass(frozen=True)
class QaSampling:
    """Share of automatic decisions sent to review anyway, to measure automation's error rate.

    Sampling is stratified: every (route, `strata_column` value) stratum is sampled at its
    route's rate, and at least `min_per_stratum` cases are taken from each stratum so rare
    strata (a small risk band) are never left unmeasured.
    """

    rate: float
    rates: dict[str, float] = field(default_factory=dict)  # per automatic route, overrides rate
    strata_column: str | None = None
    min_per_stratum: int = 0
    queue: str = "qa_review"
    priority: int = 3

    def rate_for(self, route: str) -> float:
        return self.rates.get(route, self.rate)


@dataclass(frozen=True)
class Policy:
    """A loaded policy file; `digest` and `text` pin exactly what routed a decision.

    The `default_*` fields describe the route of a case no rule fires for; a human_review
    default needs a queue and priority like any review rule.
    """

    version: str
    owner: str
    effective_date: date
    description: str
    default_outcome: str
    rules: tuple[Rule, ...]
    digest: str
    text: str
    default_reason_code: str = "DEFAULT"
    default_queue: str | None = None
    default_priority: int | None = None
    source: str = "<memory>"
    # Reviewer capacity: cases per day each queue can take; queues not named are unbounded.
    queue_capacity: dict[str, int] = field(default_factory=dict)
    # Columns (descending) that order a queue's cases: the first `capacity` are reviewed today.
    capacity_order: tuple[str, ...] = ()
    qa_sampling: QaSampling | None = None
    # Queue for automatic cases sent to review while automation is halted (kill switch).
    halt_queue: str | None = None

    @property
    def queue_for_halt(self) -> str:
        """Where halted automatic cases go: the declared halt queue, else the default queue."""
        return self.halt_queue or self.default_queue or "automation_halt"


def policy_problems(policy: Policy) -> list[str]:
    """Every problem visible without case data, each naming the file and the rule id."""
    where = policy.source
    problems: list[str] = []
    if policy.default_outcome not in PRECEDENCE:
        problems.append(
            f"{where}: default_outcome '{policy.default_outcome}' is not one of {list(PRECEDENCE)}"
        )
    if not policy.default_reason_code:
        problems.append(f"{where}: default_reason_code is missing")
    problems += _routing_problems(
        f"{where}: default route",
        policy.default_outcome,
        policy.default_queue,
        policy.default_priority,
        four_eyes=False,
    )
    if len(policy.rules) > MAX_RULES:
        problems.append(f"{where}: {len(policy.rules)} rules, at most {MAX_RULES} are supported")
    seen: set[str] = set()
    for rule in policy.rules:
        label = f"{where}: rule '{rule.id}'"
        if rule.id in seen:
            problems.append(f"{label}: duplicate rule id")
        seen.add(rule.id)
        problems += _rule_problems(label, rule)
    for queue, capacity in policy.queue_capacity.items():
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            problems.append(f"{where}: queues: '{queue}' daily_capacity must be an integer >= 0")
    qa = policy.qa_sampling
    if qa is not None:
        for route, rate in {"rate": qa.rate, **qa.rates}.items():
            if not 0.0 <= rate <= 1.0:
                problems.append(f"{where}: qa_sampling: {route} {rate} is not a share in [0, 1]")
        unknown = sorted(set(qa.rates) - {AUTO_APPROVE, AUTO_DECLINE})
        if unknown:
            problems.append(f"{where}: qa_sampling: rates for non-automatic routes {unknown}")
        if qa.min_per_stratum < 0 or qa.priority < 1:
            problems.append(f"{where}: qa_sampling: min_per_stratum >= 0 and priority >= 1")
    return problems


def policy_columns(policy: Policy) -> set[str]:
    """Case columns the policy needs beyond its rule conditions (QA strata, capacity order)."""
    extra = set(policy.capacity_order)
    if policy.qa_sampling is not None and policy.qa_sampling.strata_column:
        extra.add(policy.qa_sampling.strata_column)
    return extra


def _rule_problems(label: str, rule: Rule) -> list[str]:
    """Problems of one rule on its own."""
    problems: list[str] = []
    if not rule.id:
        problems.append(f"{label}: rule id is missing")
    if not rule.text:
        problems.append(f"{label}: text (plain language for reviewers) is missing")
    if not rule.reason_code:
        problems.append(f"{label}: reason_code is missing")
    if rule.outcome not in PRECEDENCE:
        problems.append(f"{label}: outcome '{rule.outcome}' is not one of {list(PRECEDENCE)}")
    parse = parse_problem(rule.when)
    if parse is not None:
        problems.append(f"{label}: {parse}")
    problems += _routing_problems(label, rule.outcome, rule.queue, rule.priority, rule.four_eyes)
    return problems


def _routing_problems(
    label: str, outcome: str, queue: str | None, priority: int | None, four_eyes: bool
) -> list[str]:
    """Review routes need a queue and a priority; automatic routes must not carry them."""
    if outcome == HUMAN_REVIEW:
        problems = [] if queue else [f"{label}: human_review without a queue"]
        if priority is None or priority < 1:
            problems.append(f"{label}: human_review needs a priority >= 1 (1 = most urgent)")
        return problems
    if queue is not None or priority is not None or four_eyes:
        return [f"{label}: queue/priority/four_eyes only apply to human_review"]
    return []


_POLICY_REQUIRED = ("version", "owner", "effective_date", "description", "default_outcome", "rules")
_POLICY_OPTIONAL = (
    "default_reason_code",
    "default_queue",
    "default_priority",
    "queues",
    "capacity_order",
    "qa_sampling",
    "halt_queue",
)
_QA_KEYS = ("rate", "rates", "strata_column", "min_per_stratum", "queue", "priority")
_RULE_REQUIRED = ("id", "text", "when", "outcome", "reason_code")
_RULE_OPTIONAL = ("queue", "priority", "four_eyes")


def load_policy(path: Path) -> Policy:
    """Load a policy file and run every check that needs no case data.

    Raises `PolicyError` listing all problems at once (each naming the file and rule id), so a
    reviewer fixes a file in one pass instead of one error per run.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    return load_policy_text(text, str(path))


def load_policy_text(text: str, source: str) -> Policy:
    """Load a policy from its exact text (a file, or the copy stored at activation).

    The digest is the SHA-256 of the UTF-8 bytes, so a policy restored from the audit
    database for a rollback has the digest it had when it was first activated.
    """
    path = source
    data = text.encode("utf-8")
    raw = parse_yaml(text, path, "policy", PolicyError)
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: a policy file must be a mapping of fields")
    problems: list[str] = []
    fields = _Fields(str(path), problems)
    fields.check_keys(raw, _POLICY_REQUIRED, _POLICY_OPTIONAL)
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list):
        problems.append(f"{path}: rules must be a list")
        rules_raw = []
    policy = Policy(
        version=fields.text(raw, "version"),
        owner=fields.text(raw, "owner"),
        effective_date=fields.iso_date(raw, "effective_date"),
        description=fields.text(raw, "description"),
        default_outcome=fields.text(raw, "default_outcome"),
        rules=tuple(_parse_rule(str(path), i, r, problems) for i, r in enumerate(rules_raw)),
        digest=hashlib.sha256(data).hexdigest(),
        text=text,
        default_reason_code=fields.text(raw, "default_reason_code", default="DEFAULT"),
        default_queue=fields.optional_text(raw, "default_queue"),
        default_priority=fields.integer(raw, "default_priority"),
        source=str(path),
        queue_capacity=_queues(str(path), raw.get("queues"), problems),
        capacity_order=tuple(fields.text_list(raw, "capacity_order")),
        qa_sampling=_qa_sampling(str(path), raw.get("qa_sampling"), problems),
        halt_queue=fields.optional_text(raw, "halt_queue"),
    )
    problems += policy_problems(policy)
    if problems:
        raise PolicyError("\n".join(problems))
    return policy


def _queues(source: str, raw: Any, problems: list[str]) -> dict[str, int]:
    """`queues: {name: {daily_capacity: N}}`; malformed entries are reported, not guessed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{source}: queues must map queue names to {{daily_capacity: N}}")
        return {}
    capacity: dict[str, int] = {}
    for name, spec in raw.items():
        fields = _Fields(f"{source}: queues: '{name}'", problems)
        if not isinstance(spec, dict):
            problems.append(f"{source}: queues: '{name}' must be a mapping with daily_capacity")
            continue
        fields.check_keys(spec, ("daily_capacity",), ())
        value = fields.integer(spec, "daily_capacity")
        if value is not None:
            capacity[str(name)] = value
    return capacity


def _qa_sampling(source: str, raw: Any, problems: list[str]) -> QaSampling | None:
    """The optional `qa_sampling` section."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{source}: qa_sampling must be a mapping")
        return None
    fields = _Fields(f"{source}: qa_sampling", problems)
    fields.check_keys(raw, ("rate",), _QA_KEYS)
    rates = raw.get("rates") or {}
    if not isinstance(rates, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in rates.values()
    ):
        problems.append(f"{source}: qa_sampling: rates must map routes to shares")
        rates = {}
    return QaSampling(
        rate=fields.number(raw, "rate"),
        rates={str(k): float(v) for k, v in rates.items()},
        strata_column=fields.optional_text(raw, "strata_column"),
        min_per_stratum=fields.integer(raw, "min_per_stratum") or 0,
        queue=fields.text(raw, "queue", default="qa_review"),
        priority=fields.integer(raw, "priority") or 3,
    )


def _parse_rule(source: str, index: int, raw: Any, problems: list[str]) -> Rule:
    """One rule mapping; missing fields become empty so `policy_problems` names them."""
    if not isinstance(raw, dict):
        problems.append(f"{source}: rules[{index}] must be a mapping")
        raw = {}
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        problems.append(f"{source}: rules[{index}]: id must be a non-empty string")
        rule_id = f"rules[{index}]"
    fields = _Fields(f"{source}: rule '{rule_id}'", problems)
    fields.check_keys(raw, (), _RULE_REQUIRED + _RULE_OPTIONAL)
    four_eyes = raw.get("four_eyes", False)
    if not isinstance(four_eyes, bool):
        problems.append(f"{source}: rule '{rule_id}': four_eyes must be true or false")
        four_eyes = False
    return Rule(
        id=rule_id,
        text=fields.text(raw, "text"),
        when=fields.text(raw, "when"),
        outcome=fields.text(raw, "outcome"),
        reason_code=fields.text(raw, "reason_code"),
        queue=fields.optional_text(raw, "queue"),
        priority=fields.integer(raw, "priority"),
        four_eyes=four_eyes,
    )


@dataclass
class _Fields:
    """Typed reads from a YAML mapping that record problems instead of raising at the first."""

    label: str
    problems: list[str]

    def check_keys(
        self, raw: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
    ) -> None:
        missing = [k for k in required if k not in raw]
        unknown = [k for k in raw if k not in required and k not in optional]
        if missing:
            self.problems.append(f"{self.label}: missing fields {missing}")
        if unknown:  # a typo such as `reson_code` must not silently drop a field
            self.problems.append(f"{self.label}: unknown fields {unknown}")

    def text(self, raw: dict[str, Any], key: str, default: str = "") -> str:
        value = raw.get(key, default)
        if isinstance(value, str):
            return value.strip()
        self.problems.append(f"{self.label}: {key} must be a string, got {value!r}")
        return default

    def optional_text(self, raw: dict[str, Any], key: str) -> str | None:
        return None if raw.get(key) is None else self.text(raw, key)

    def integer(self, raw: dict[str, Any], key: str) -> int | None:
        value = raw.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.problems.append(f"{self.label}: {key} must be an integer, got {value!r}")
        return None

    def number(self, raw: dict[str, Any], key: str) -> float:
        value = raw.get(key, 0.0)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.problems.append(f"{self.label}: {key} must be a number, got {value!r}")
        return 0.0

    def text_list(self, raw: dict[str, Any], key: str) -> list[str]:
        value = raw.get(key) or []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        self.problems.append(f"{self.label}: {key} must be a list of column names")
        return []

    def iso_date(self, raw: dict[str, Any], key: str) -> date:
        value = raw.get(key)
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.problems.append(f"{self.label}: {key} must be a date (YYYY-MM-DD), got {value!r}")
            return date.min

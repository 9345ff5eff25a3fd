"""Route every case to exactly one outcome with a versioned, reviewable policy.

Semantics (domain-agnostic; the domain's policy file supplies the rules):

- Every rule whose condition holds *fires*; `rules_fired` lists all of them in file order, so a
  reviewer sees every concern, not only the winning one.
- Precedence: a fired `auto_decline` beats a fired `human_review`, which beats a fired
  `auto_approve`. Within the winning outcome the first fired rule in file order gives the reason
  code, rule id, queue and priority. `four_eyes` is true when the route is `human_review` and
  *any* fired review rule asks for it: file order must not be able to drop a second pair of eyes.
- No rule fired: the policy's default route (`route_rule_id` is null, `rules_fired` empty).
- Nulls: conditions use SQL three-valued logic (`NULL OR TRUE` is true), and a condition whose
  result is null counts as *not fired*. So `pd >= 0.08` does not fire for a missing `pd`;
  missing data must be routed by an explicit `IS NULL` rule (or the default route).

Why a bitmask: each condition is evaluated once as a vectorised boolean column and packed into
one integer per case. Cases share few distinct masks, so the fired-rule lists and the winner are
computed once per distinct mask in Python and gathered back through a mask -> index table
(docs/scaling.md: 6.3M rows/s, against 171k rows/s for `concat_list` of `when/then` and 24k rows/s
row by row; `python -m bench.policy` measures a 20-rule policy, see BENCHMARKS.md). At most 64
rules.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from policies.expressions import compile_condition, parse_problem, schema_problem
from policies.model import (
    HUMAN_REVIEW,
    PRECEDENCE,
    Policy,
    PolicyError,
    Rule,
    load_policy,
    policy_columns,
    policy_problems,
)

__all__ = [
    "ROUTE_SCHEMA",
    "Policy",
    "PolicyError",
    "Rule",
    "load_policy",
    "route_cases",
    "route_for_mask",
    "rule_mask_expr",
    "validate_policy",
]

# The columns `route_cases` adds, in order, with their types.
ROUTE_SCHEMA: dict[str, pl.DataType] = {
    "route": pl.String(),
    "route_reason_code": pl.String(),
    "route_rule_id": pl.String(),
    "rules_fired": pl.List(pl.String()),
    "review_queue": pl.String(),
    "review_priority": pl.Int32(),
    "four_eyes": pl.Boolean(),
    "policy_version": pl.String(),
    "policy_digest": pl.String(),
}
_MASK = "__policy_rule_mask"
# Columns decided per distinct mask; the policy version and digest are literals added after.
_LOOKUP_COLUMNS = list(ROUTE_SCHEMA)[:7]


def validate_policy(policy: Policy, schema: Mapping[str, pl.DataType]) -> list[str]:
    """Every problem of `policy` against case columns `schema`; empty when it can route them."""
    problems = policy_problems(policy)
    for rule in policy.rules:
        if parse_problem(rule.when) is not None:
            continue  # already reported by policy_problems
        problem = schema_problem(rule.when, schema)
        if problem is not None:
            problems.append(f"{policy.source}: rule '{rule.id}': {problem}")
    missing = sorted(c for c in policy_columns(policy) if c not in schema)
    if missing:
        problems.append(
            f"{policy.source}: qa_sampling.strata_column / capacity_order name unknown "
            f"columns {missing}"
        )
    return problems


def route_cases(policy: Policy, cases: pl.DataFrame) -> pl.DataFrame:
    """Add the route columns of `ROUTE_SCHEMA` to `cases`, one route per case, order kept.

    Raises `PolicyError` when the policy does not validate against `cases.schema`, and
    `ValueError` when `cases` already carries route columns (routing twice is a bug upstream).
    """
    problems = validate_policy(policy, cases.schema)
    if problems:
        raise PolicyError("\n".join(problems))
    clash = [c for c in (*ROUTE_SCHEMA, _MASK) if c in cases.columns]
    if clash:
        raise ValueError(f"cases already have route columns {clash}; drop them to re-route")
    masks = rule_masks(policy.rules, cases)
    distinct, codes = dense_codes(masks, len(policy.rules))
    lookup = _lookup(policy, distinct.tolist())
    routed = pl.concat([cases, lookup.drop(_MASK).gather(codes)], how="horizontal")
    return routed.with_columns(
        pl.lit(policy.version, pl.String).alias("policy_version"),
        pl.lit(policy.digest, pl.String).alias("policy_digest"),
    )


def rule_masks(rules: tuple[Rule, ...], cases: pl.DataFrame) -> np.ndarray:
    """The fired-rule bitmask of every case (bit i set when rule i fired; null = not fired).

    Conditions are evaluated by Polars in one parallel `select`; the bits are packed with
    NumPy into one preallocated integer array (UInt32 up to 32 rules), since packing in
    Polars (`sum_horizontal` of `when/then` or of shifted casts) cost several times the
    conditions themselves.
    """
    dtype = np.uint32 if len(rules) <= 32 else np.uint64
    mask = np.zeros(cases.height, dtype=dtype)
    if not rules or cases.height == 0:
        return mask
    fired = cases.select(
        compile_condition(r.when).fill_null(False).alias(f"r{i}") for i, r in enumerate(rules)
    )
    bit = np.empty(cases.height, dtype=dtype)
    for i, column in enumerate(fired.get_columns()):
        np.multiply(column.to_numpy(), dtype(1 << i), out=bit, dtype=dtype, casting="unsafe")
        np.bitwise_or(mask, bit, out=mask)
    return mask


# Up to this many rules, masks index a direct lookup table (2^20 entries, 4 MB).
_DIRECT_TABLE_RULES = 20


def dense_codes(masks: np.ndarray, rules: int) -> tuple[np.ndarray, pl.Series]:
    """The distinct masks (sorted) and each case's index among them.

    Few distinct masks occur (hundreds to a few thousand), so with up to 20 rules a table
    indexed by the mask itself maps a mask to its index in two linear passes, instead of a
    sort or a binary search per case; beyond that, sorted unique + binary search.
    """
    if rules <= _DIRECT_TABLE_RULES:
        present = np.zeros(1 << max(rules, 1), dtype=bool)
        present[masks] = True
        distinct = np.flatnonzero(present).astype(masks.dtype)
        table = np.zeros(present.size, dtype=np.uint32)
        table[distinct] = np.arange(distinct.size, dtype=np.uint32)
        codes = table[masks]
    else:
        distinct = np.unique(masks)
        codes = np.searchsorted(distinct, masks).astype(np.uint32)
    return distinct, pl.Series("__code", codes, dtype=pl.UInt32)


def rule_mask_expr(rules: tuple[Rule, ...]) -> pl.Expr:
    """Bit i is set when rule i fired; a null condition result counts as not fired."""
    if not rules:
        return pl.lit(0, pl.UInt64)
    bits = [
        pl.when(compile_condition(rule.when).fill_null(False))
        .then(pl.lit(1 << i, pl.UInt64))
        .otherwise(pl.lit(0, pl.UInt64))
        for i, rule in enumerate(rules)
    ]
    return pl.sum_horizontal(bits).cast(pl.UInt64)


def _lookup(policy: Policy, masks: list[int]) -> pl.DataFrame:
    """One row per distinct mask with its fired rules and winning route.

    Same result as `route_for_mask` per mask, built column-wise with bit operations: the
    winner of an outcome is the lowest set bit of the mask restricted to that outcome's rules.
    """
    rules = policy.rules
    outcome_bits = {
        outcome: sum(1 << i for i, r in enumerate(rules) if r.outcome == outcome)
        for outcome in PRECEDENCE
    }
    four_eyes_bits = sum(
        1 << i for i, r in enumerate(rules) if r.outcome == HUMAN_REVIEW and r.four_eyes
    )
    columns: dict[str, list[object]] = {name: [] for name in _LOOKUP_COLUMNS}
    for mask in masks:
        columns["rules_fired"].append([r.id for i, r in enumerate(rules) if mask >> i & 1])
        winner = None
        for outcome in PRECEDENCE:
            hits = mask & outcome_bits[outcome]
            if hits:
                winner = rules[(hits & -hits).bit_length() - 1]
                break
        review = (winner.outcome if winner else policy.default_outcome) == HUMAN_REVIEW
        columns["route"].append(winner.outcome if winner else policy.default_outcome)
        columns["route_reason_code"].append(
            winner.reason_code if winner else policy.default_reason_code
        )
        columns["route_rule_id"].append(winner.id if winner else None)
        columns["review_queue"].append(
            (winner.queue if winner else policy.default_queue) if review else None
        )
        columns["review_priority"].append(
            (winner.priority if winner else policy.default_priority) if review else None
        )
        columns["four_eyes"].append(bool(review and winner and mask & four_eyes_bits))
    schema = {_MASK: pl.UInt64(), **{k: ROUTE_SCHEMA[k] for k in _LOOKUP_COLUMNS}}
    return pl.DataFrame({_MASK: masks, **columns}, schema=schema)


def route_for_mask(policy: Policy, mask: int) -> tuple[object, ...]:
    """The route tuple (in `ROUTE_SCHEMA` order, without policy columns) for one mask."""
    fired = [rule for i, rule in enumerate(policy.rules) if mask >> i & 1]
    fired_ids = [rule.id for rule in fired]
    for outcome in PRECEDENCE:
        winner = next((rule for rule in fired if rule.outcome == outcome), None)
        if winner is None:
            continue
        if outcome != HUMAN_REVIEW:
            return (outcome, winner.reason_code, winner.id, fired_ids, None, None, False)
        four_eyes = any(r.four_eyes for r in fired if r.outcome == HUMAN_REVIEW)
        return (
            outcome,
            winner.reason_code,
            winner.id,
            fired_ids,
            winner.queue,
            winner.priority,
            four_eyes,
        )
    return (
        policy.default_outcome,
        policy.default_reason_code,
        None,
        fired_ids,
        policy.default_queue,
        policy.default_priority,
        False,
    )

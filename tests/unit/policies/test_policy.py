"""Policy engine: loading, validation, precedence, nulls, and equality with a row-by-row oracle."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from hitl_gate.core.domain import PROJECT_ROOT, load_domain
from hitl_gate.quality.contract import CONTRACT_DTYPES
from policies.engine import (
    ROUTE_SCHEMA,
    Policy,
    PolicyError,
    Rule,
    load_policy,
    route_cases,
    validate_policy,
)

SHIPPED_V1 = PROJECT_ROOT / "policies" / "consumer_credit" / "v1.yaml"
# Written out here, not imported, so the oracle cannot inherit a bug in the engine's order.
OUTCOME_ORDER = ("auto_decline", "human_review", "auto_approve")
SCHEMA = {"a": pl.Float64(), "b": pl.Int64(), "band": pl.String(), "flag": pl.Boolean()}


def _rule(rule_id: str, when: str, outcome: str, **extra: Any) -> dict[str, Any]:
    """A rule mapping as it appears in a policy file."""
    return {
        "id": rule_id,
        "text": f"text of {rule_id}",
        "when": when,
        "outcome": outcome,
        "reason_code": f"RC-{rule_id}",
        **extra,
    }


def _review(
    rule_id: str, when: str, queue: str = "analyst", priority: int = 3, **extra: Any
) -> dict[str, Any]:
    return _rule(rule_id, when, "human_review", queue=queue, priority=priority, **extra)


def _policy_dict(rules: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "version": "test-v1",
        "owner": "risk@example",
        "effective_date": "2026-01-01",
        "description": "test policy",
        "default_outcome": "auto_approve",
        "rules": rules,
        **top,
    }


def _write(tmp_path: Path, data: dict[str, Any], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _policy(tmp_path: Path, rules: list[dict[str, Any]], **top: Any) -> Policy:
    return load_policy(_write(tmp_path, _policy_dict(rules, **top)))


# --- loading and validation ---------------------------------------------------------------------


def test_load_keeps_text_and_digest_of_the_file_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path, _policy_dict([_review("r1", "a > 1", four_eyes=True)]))
    policy = load_policy(path)
    assert policy.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.text == path.read_text(encoding="utf-8")
    assert policy.version == "test-v1" and policy.source == str(path)
    assert policy.rules == (
        Rule("r1", "text of r1", "a > 1", "human_review", "RC-r1", "analyst", 3, True),
    )
    assert policy.effective_date.isoformat() == "2026-01-01"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([_rule("r1", "a > 1", "auto_maybe")], "outcome 'auto_maybe'"),
        (
            [{k: v for k, v in _rule("r1", "a > 1", "auto_approve").items() if k != "reason_code"}],
            "reason_code is missing",
        ),
        ([_rule("r1", "a > 1", "human_review", priority=2)], "human_review without a queue"),
        ([_rule("r1", "a > 1", "human_review", queue="q")], "needs a priority"),
        ([_rule("r1", "a > 1", "auto_approve", queue="q")], "only apply to human_review"),
        (
            [_rule("r1", "a > 1", "auto_approve"), _rule("r1", "b > 1", "auto_decline")],
            "duplicate rule id",
        ),
        ([_rule("r1", "a >>> 1", "auto_approve")], "does not parse"),
        ([_rule("r1", "a > 1; DROP TABLE x", "auto_approve")], "does not parse"),
        ([_rule("r1", "", "auto_approve")], "condition is empty"),
        ([_rule("r1", "a > 1", "auto_approve", reson_code="typo")], "unknown fields"),
        ([_review("r1", "a > 1", priority="high")], "priority must be an integer"),  # type: ignore[arg-type]
        ([_review("r1", "a > 1", four_eyes="yes")], "four_eyes must be true or false"),
    ],
)
def test_load_rejects_bad_rules_naming_file_and_rule(
    tmp_path: Path, rules: list[dict[str, Any]], expected: str
) -> None:
    path = _write(tmp_path, _policy_dict(rules))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = [line for line in str(info.value).splitlines() if expected in line]
    assert lines, str(info.value)
    assert all(str(path) in line and "rule 'r1'" in line for line in lines)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"default_outcome": "approve"}, "default_outcome 'approve'"),
        ({"default_outcome": "human_review"}, "default route: human_review without a queue"),
        ({"effective_date": "soon"}, "effective_date must be a date"),
        ({"version": 1}, "version must be a string"),
        ({"rules": "none"}, "rules must be a list"),
        ({"approver": "me"}, "unknown fields ['approver']"),
    ],
)
def test_load_rejects_bad_policy_fields_naming_file(
    tmp_path: Path, top: dict[str, Any], expected: str
) -> None:
    path = _write(tmp_path, {**_policy_dict([_rule("r1", "a > 1", "auto_approve")]), **top})
    with pytest.raises(PolicyError, match="policy.yaml") as info:
        load_policy(path)
    assert expected in str(info.value)


def test_load_rejects_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing.yaml: cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="list.yaml: a policy file must be a mapping"):
        load_policy(listing)


def test_load_names_a_rule_without_id_by_position(tmp_path: Path) -> None:
    rule = {k: v for k, v in _rule("x", "a > 1", "auto_approve").items() if k != "id"}
    with pytest.raises(PolicyError, match=r"rules\[0\]: id must be a non-empty string"):
        _policy(tmp_path, [rule])


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("a > 1 AND missing_col = 2", "unknown columns ['missing_col']"),
        ("a + b", "not boolean"),
        ("band > 3", "cannot be evaluated"),
        ("b IN ('x', 'y')", "cannot be evaluated"),
    ],
)
def test_validate_checks_expressions_against_the_case_schema(
    tmp_path: Path, when: str, expected: str
) -> None:
    policy = _policy(
        tmp_path, [_rule("ok", "a > 1", "auto_approve"), _rule("bad", when, "auto_decline")]
    )
    problems = validate_policy(policy, SCHEMA)
    assert len(problems) == 1
    assert expected in problems[0] and "rule 'bad'" in problems[0]
    assert policy.source in problems[0]


def test_validate_reports_every_schema_free_problem_of_a_built_policy(tmp_path: Path) -> None:
    good = _policy(tmp_path, [_rule("r1", "a > 1", "auto_approve")])
    bad_rules = (
        Rule("dup", "t", "a > 1", "auto_approve", "A1"),
        Rule("dup", "t", "a > 2", "auto_approve", "A2"),
        Rule("noreason", "t", "a > 1", "auto_decline", ""),
        Rule("noqueue", "t", "a > 1", "human_review", "H1", priority=1),
        Rule("badout", "t", "a > 1", "escalate", "X1"),
        Rule("noparse", "t", "a >>> 1", "auto_approve", "A3"),
    )
    problems = validate_policy(dataclasses.replace(good, rules=bad_rules), SCHEMA)
    for rule_id, fragment in [
        ("dup", "duplicate"),
        ("noreason", "reason_code"),
        ("noqueue", "queue"),
        ("badout", "outcome 'escalate'"),
        ("noparse", "does not parse"),
    ]:
        assert any(
            f"rule '{rule_id}'" in p and fragment in p and good.source in p for p in problems
        ), (rule_id, problems)
    assert validate_policy(good, SCHEMA) == []


# --- routing semantics --------------------------------------------------------------------------

PRECEDENCE_RULES = [
    _rule("approve_a", "a < 0.5", "auto_approve"),
    _review("review_b", "b > 5", queue="analyst", priority=3),
    _rule("decline_band", "band = 'E'", "auto_decline"),
    _review("review_flag", "flag", queue="senior", priority=1, four_eyes=True),
    _rule("decline_a", "a > 0.9", "auto_decline"),
]


def test_precedence_decline_beats_review_beats_approve(tmp_path: Path) -> None:
    policy = _policy(tmp_path, PRECEDENCE_RULES)
    cases = pl.DataFrame(
        {
            "a": [0.1, 0.1, 0.1, 0.95, 0.6, 0.1],
            "b": [9, 9, 1, 9, 1, 9],
            "band": ["E", "A", "A", "E", "A", "A"],
            "flag": [True, False, False, True, False, True],
        },
        schema=SCHEMA,
    )
    out = route_cases(policy, cases)
    assert out["route"].to_list() == [
        "auto_decline",
        "human_review",
        "auto_approve",
        "auto_decline",
        "auto_approve",
        "human_review",
    ]
    # Within the winning outcome the first fired rule in file order gives the reason and queue.
    assert out["route_rule_id"].to_list() == [
        "decline_band",
        "review_b",
        "approve_a",
        "decline_band",
        None,
        "review_b",
    ]
    assert out["route_reason_code"].to_list() == [
        "RC-decline_band",
        "RC-review_b",
        "RC-approve_a",
        "RC-decline_band",
        "DEFAULT",
        "RC-review_b",
    ]
    assert out["review_queue"].to_list() == [None, "analyst", None, None, None, "analyst"]
    assert out["review_priority"].to_list() == [None, 3, None, None, None, 3]
    # Any fired review rule asking for four eyes keeps them, even when another review rule wins.
    assert out["four_eyes"].to_list() == [False, False, False, False, False, True]
    assert out["rules_fired"].to_list() == [
        ["approve_a", "review_b", "decline_band", "review_flag"],
        ["approve_a", "review_b"],
        ["approve_a"],
        ["review_b", "decline_band", "review_flag", "decline_a"],
        [],
        ["approve_a", "review_b", "review_flag"],
    ]


def test_output_schema_order_and_policy_columns(tmp_path: Path) -> None:
    policy = _policy(tmp_path, PRECEDENCE_RULES)
    cases = pl.DataFrame(
        {
            "a": [0.3, 0.7],
            "b": [1, 2],
            "band": ["A", "B"],
            "flag": [False, False],
            "case_id": ["c2", "c1"],
        }
    )
    out = route_cases(policy, cases.with_columns(pl.col("a").cast(pl.Float64)))
    assert out.columns == [*cases.columns, *ROUTE_SCHEMA]
    assert dict(out.select(list(ROUTE_SCHEMA)).schema) == ROUTE_SCHEMA
    assert out["case_id"].to_list() == ["c2", "c1"]
    assert set(out["policy_version"]) == {"test-v1"}
    assert set(out["policy_digest"]) == {policy.digest}


def test_default_route_when_no_rule_fires(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        [_rule("r1", "a > 0.9", "auto_decline")],
        default_outcome="human_review",
        default_reason_code="H99",
        default_queue="analyst",
        default_priority=4,
    )
    out = route_cases(policy, pl.DataFrame({"a": [0.1, 0.95]}))
    first = out.row(0, named=True)
    assert (first["route"], first["route_reason_code"], first["route_rule_id"]) == (
        "human_review",
        "H99",
        None,
    )
    assert (first["review_queue"], first["review_priority"], first["rules_fired"]) == (
        "analyst",
        4,
        [],
    )
    assert out["route"][1] == "auto_decline"


def test_null_condition_counts_as_not_fired(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        [
            _rule("high_a", "a >= 0.5", "auto_decline"),
            _rule("not_low_a", "NOT (a < 0.5)", "auto_decline"),
            _review("missing_a", "a IS NULL"),
            _rule("kleene_or", "a > 0.5 OR b > 1", "auto_approve"),
        ],
    )
    out = route_cases(
        policy,
        pl.DataFrame({"a": [None, None], "b": [2, 0]}, schema={"a": pl.Float64, "b": pl.Int64}),
    )
    # NULL OR TRUE is true (SQL), NULL OR FALSE is null and does not fire.
    assert out["rules_fired"].to_list() == [["missing_a", "kleene_or"], ["missing_a"]]
    assert out["route"].to_list() == ["human_review", "human_review"]


def test_empty_frame_and_policy_without_rules(tmp_path: Path) -> None:
    policy = _policy(tmp_path, PRECEDENCE_RULES)
    empty = route_cases(policy, pl.DataFrame(schema=SCHEMA))
    assert empty.height == 0 and dict(empty.select(list(ROUTE_SCHEMA)).schema) == ROUTE_SCHEMA
    bare = _policy(tmp_path, [])
    out = route_cases(bare, pl.DataFrame({"a": [1.0]}))
    assert out.select("route", "rules_fired").row(0) == ("auto_approve", [])


def test_route_refuses_invalid_policy_and_routed_frames(tmp_path: Path) -> None:
    policy = _policy(tmp_path, [_rule("r1", "zzz > 1", "auto_approve")])
    with pytest.raises(PolicyError, match=r"rule 'r1': condition uses unknown columns \['zzz'\]"):
        route_cases(policy, pl.DataFrame({"a": [1.0]}))
    ok = _policy(tmp_path, [_rule("r1", "a > 1", "auto_approve")])
    routed = route_cases(ok, pl.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="already have route columns"):
        route_cases(ok, routed)


# --- equality with a slow row-by-row oracle -----------------------------------------------------

Tri = bool | None


def _and(*values: Tri) -> Tri:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(*values: Tri) -> Tri:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _cmp(value: Any, op: Callable[[Any], bool]) -> Tri:
    return None if value is None else op(value)


# Each rule's SQL next to an independent Python reading of it with SQL three-valued logic.
ORACLE_RULES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], Tri]]] = [
    (
        _rule("app_low", "a < 0.3 AND band IN ('A', 'B')", "auto_approve"),
        lambda r: _and(_cmp(r["a"], lambda a: a < 0.3), _cmp(r["band"], lambda b: b in "AB")),
    ),
    (
        _review("rev_b", "b BETWEEN 4 AND 6", queue="q1", priority=2),
        lambda r: _cmp(r["b"], lambda b: 4 <= b <= 6),
    ),
    (
        _rule("dec_a", "a >= 0.85 OR band = 'E'", "auto_decline"),
        lambda r: _or(_cmp(r["a"], lambda a: a >= 0.85), _cmp(r["band"], lambda b: b == "E")),
    ),
    (
        _review("rev_null", "b IS NULL OR band IS NULL", queue="q2", priority=1, four_eyes=True),
        lambda r: r["b"] is None or r["band"] is None,
    ),
    (
        _rule("app_flag", "flag AND NOT (b > 7)", "auto_approve"),
        lambda r: _and(r["flag"], _cmp(r["b"], lambda b: not b > 7)),
    ),
    (
        _review("rev_mid", "a > 0.4 AND a < 0.7", queue="q1", priority=3, four_eyes=True),
        lambda r: _and(_cmp(r["a"], lambda a: a > 0.4), _cmp(r["a"], lambda a: a < 0.7)),
    ),
    (
        _rule("dec_combo", "COALESCE(b, 0) >= 9 AND flag = FALSE", "auto_decline"),
        lambda r: _and((r["b"] or 0) >= 9, _cmp(r["flag"], lambda f: f is False)),
    ),
    (
        _rule("app_any", "band <> 'D'", "auto_approve"),
        lambda r: _cmp(r["band"], lambda b: b != "D"),
    ),
]


def _random_cases(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)

    def with_nulls(values: list[Any], share: float) -> list[Any]:
        return [None if m else v for v, m in zip(values, rng.random(n) < share, strict=True)]

    return pl.DataFrame(
        {
            "a": with_nulls(rng.random(n).round(3).tolist(), 0.1),
            "b": with_nulls(rng.integers(0, 11, n).tolist(), 0.1),
            "band": with_nulls(rng.choice(list("ABCDE"), n).tolist(), 0.05),
            "flag": with_nulls((rng.random(n) < 0.3).tolist(), 0.1),
        },
        schema=SCHEMA,
    )


def _oracle(
    policy: Policy, preds: list[Callable[[dict[str, Any]], Tri]], cases: pl.DataFrame
) -> pl.DataFrame:
    """Route one row at a time, straight from the documented semantics."""
    rows = []
    for case in cases.iter_rows(named=True):
        fired = [rule for rule, pred in zip(policy.rules, preds, strict=True) if pred(case)]
        winner = next((r for outcome in OUTCOME_ORDER for r in fired if r.outcome == outcome), None)
        route = winner.outcome if winner else policy.default_outcome
        review = route == "human_review"
        rows.append(
            {
                "route": route,
                "route_reason_code": winner.reason_code if winner else policy.default_reason_code,
                "route_rule_id": winner.id if winner else None,
                "rules_fired": [r.id for r in fired],
                "review_queue": (winner.queue if winner else policy.default_queue)
                if review
                else None,
                "review_priority": (
                    (winner.priority if winner else policy.default_priority) if review else None
                ),
                "four_eyes": review and any(r.four_eyes for r in fired if r.outcome == route),
                "policy_version": policy.version,
                "policy_digest": policy.digest,
            }
        )
    return pl.concat([cases, pl.DataFrame(rows, schema=ROUTE_SCHEMA)], how="horizontal")


@pytest.mark.parametrize(
    ("default", "seed"), [("auto_approve", 1), ("human_review", 2), ("auto_decline", 3)]
)
def test_route_cases_equals_row_by_row_oracle(tmp_path: Path, default: str, seed: int) -> None:
    review_default = {"default_queue": "fallback", "default_priority": 5}
    extra = review_default if default == "human_review" else {}
    policy = _policy(
        tmp_path,
        [rule for rule, _ in ORACLE_RULES],
        default_outcome=default,
        default_reason_code="DEF",
        **extra,
    )
    cases = _random_cases(3000, seed)
    expected = _oracle(policy, [pred for _, pred in ORACLE_RULES], cases)
    actual = route_cases(policy, cases)
    assert_frame_equal(actual, expected)
    assert actual["route"].n_unique() == 3  # the sample exercises every outcome


# --- the shipped consumer credit policy ---------------------------------------------------------


def _routing_schema() -> dict[str, pl.DataType]:
    """Feature columns of the domain (passthrough + derived) plus the model outputs."""
    domain = load_domain("consumer_credit")
    contract = pl.DataFrame(
        schema={name: CONTRACT_DTYPES[col.type] for name, col in domain.contract.columns.items()}
    )
    derived = contract.select(
        [pl.sql_expr(sql).alias(name) for name, sql in domain.features.derived.items()]
    )
    schema = {name: contract.schema[name] for name in domain.features.passthrough}
    schema.update(derived.schema)
    return {**schema, "pd": pl.Float64(), "score": pl.Int64(), "risk_band": pl.String()}


def test_shipped_v1_policy_validates_against_the_domain_columns() -> None:
    domain = load_domain("consumer_credit")
    assert domain.policy_path == SHIPPED_V1.resolve()
    policy = load_policy(SHIPPED_V1)
    assert policy.version == "consumer_credit-v1"
    assert validate_policy(policy, _routing_schema()) == []
    reviews = [r for r in policy.rules if r.outcome == "human_review"]
    assert {r.queue for r in reviews} == {"credit_analyst", "senior_underwriter"}
    assert all(r.four_eyes for r in reviews if "35000" in r.when)


def _random_credit_cases(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    schema = _routing_schema()
    pd_ = np.exp(rng.uniform(np.log(0.003), np.log(0.15), n))
    band = np.array(list("ABCDE"))[np.searchsorted([0.01, 0.02, 0.04, 0.08], pd_)]
    columns: dict[str, Any] = {
        "loan_amount": rng.choice([5000.0, 15000.0, 25000.0, 30000.0, 35000.0, 40000.0], n),
        "debt_to_income": rng.uniform(0, 60, n),
        "delinq_2y": rng.integers(0, 5, n),
        "public_record_bankrupt": rng.choice([0, 0, 0, 1, 2], n),
        "loan_to_income": rng.uniform(0, 1, n),
        "pd": pd_,
        "risk_band": band,
    }
    frame = pl.DataFrame({name: columns.get(name, np.zeros(n)) for name in schema})
    frame = frame.with_columns(
        [
            pl.when(pl.Series(rng.random(n) < 0.03)).then(None).otherwise(pl.col(c)).alias(c)
            for c in ("pd", "risk_band", "debt_to_income", "loan_to_income")
        ]
    )
    return frame.cast(pl.Schema(schema))


def test_shipped_v1_conditions_agree_with_duckdb_sql() -> None:
    """Polars' SQL dialect must read each condition like a standard SQL engine does."""
    policy = load_policy(SHIPPED_V1)
    cases = _random_credit_cases(5000, seed=7)
    routed = route_cases(policy, cases)
    con = duckdb.connect()
    con.register("cases", cases.to_arrow())
    for rule in policy.rules:
        # The condition is policy text, not a runtime value: it cannot be a bound parameter.
        expected = [
            bool(v)
            for (v,) in con.execute(f"SELECT COALESCE(({rule.when}), FALSE) FROM cases").fetchall()
        ]
        actual = routed["rules_fired"].list.contains(rule.id).to_list()
        assert actual == expected, rule.id
    shares = routed["route"].value_counts(normalize=True)
    assert set(shares["route"]) == set(OUTCOME_ORDER)


def test_more_than_twenty_rules_take_the_sorted_lookup_and_agree_with_the_oracle(
    tmp_path: Path,
) -> None:
    """Beyond 20 rules the mask -> index table would be too large: the sorted path is used."""
    extra = [
        (
            _rule(f"x{k}", f"a >= {k / 32}", "auto_approve"),
            (lambda t: lambda r: _cmp(r["a"], lambda a: a >= t))(k / 32),
        )
        for k in range(24)
    ]
    rules = [*ORACLE_RULES, *extra]
    assert len(rules) > 20
    policy = _policy(tmp_path, [rule for rule, _ in rules], default_reason_code="DEF")
    cases = _random_cases(2000, 4)
    assert_frame_equal(route_cases(policy, cases), _oracle(policy, [p for _, p in rules], cases))


@pytest.mark.parametrize("default", ["auto_approve", "human_review"])
def test_column_wise_lookup_equals_route_for_mask(tmp_path: Path, default: str) -> None:
    """The per-mask table the engine gathers from agrees with the readable `route_for_mask`."""
    from policies.engine import _lookup, route_for_mask

    extra = (
        {"default_queue": "fallback", "default_priority": 5} if default == "human_review" else {}
    )
    rules = [rule for rule, _ in ORACLE_RULES]
    policy = _policy(tmp_path, rules, default_outcome=default, **extra)
    masks = sorted(
        {
            0,
            (1 << len(rules)) - 1,
            *np.random.default_rng(5).integers(0, 1 << len(rules), 300).tolist(),
        }
    )
    table = _lookup(policy, masks)
    assert table.drop("__policy_rule_mask").rows() == [route_for_mask(policy, m) for m in masks]

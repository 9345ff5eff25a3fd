"""Static analysis of a policy: unreachable rules and contradictory overlaps.

Method (interval partition over the rules' literals, then evaluation with the real engine):

1. Every literal in the conditions is attributed to the column it is compared with (the
   nearest column named before it in the same `AND`/`OR` clause, else the next one).
2. For each referenced column, representative values are chosen so that every comparison of
   that column with those literals takes every truth value it can: for numbers, each literal,
   a value between each pair of neighbouring literals, one below the smallest and one above
   the largest (for integer columns, `c - 1, c, c + 1`); for strings, each literal and one
   value equal to none of them; for booleans, true and false; always also NULL.
3. The probe frame is the cartesian product of those values (when it has at most
   `max_probes` rows; otherwise a seeded random sample of that size) and the engine routes it
   with the same bitmask it uses in production.

For a condition made of atoms that compare one column with literals (`pd >= 0.05`,
`risk_band IN ('A', 'B')`, `x IS NULL`), every atom's truth value is constant between two
neighbouring literals, so the product holds one case of every combination of truth values the
rules can see: "never fires" and "never decides" are then proofs, not guesses, and are errors.
Conditions with arithmetic or column-to-column comparisons (`a / b > 0.5`, `a > b`), or a
sampled (too large) product, make the result evidence only; such findings are warnings.

Findings:
- *unreachable* (error when exact): a rule that never decides a case, because its condition
  is never true or because whenever it fires a rule of higher precedence (or an earlier rule
  of the same outcome) fires too. Its reason code could never reach a customer.
- *contradictory overlap* (warning): an `auto_approve` rule and an `auto_decline` rule that fire
  on the same case. Precedence resolves it (decline wins), but it usually means a threshold
  was mistyped; the witness case is shown. When real cases are given, how many of them are in
  the overlap is reported too, since synthetic probes can combine values real data never does
  (e.g. band A with a high pd, when the band is derived from pd).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl

from policies.engine import route_for_mask, rule_mask_expr
from policies.expressions import compile_condition
from policies.model import AUTO_APPROVE, AUTO_DECLINE, PRECEDENCE, Policy

ERROR = "error"
WARNING = "warning"
OTHER_TEXT = "__none_of_the_literals__"
_TOKEN = re.compile(
    r"(?P<str>'(?:[^']|'')*')"
    r"|(?P<num>(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r'|(?P<ident>[A-Za-z_][A-Za-z0-9_]*|"[^"]+")'
)
_CLAUSE_BREAK = {"and", "or"}
# Arithmetic, or a function call (an identifier followed by "(", other than IN / NOT / AND...).
_ARITHMETIC = re.compile(r"[+*/%]|\w\s*-\s*[A-Za-z_(]")
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_KEYWORDS_BEFORE_PAREN = {"in", "not", "and", "or"}


@dataclass(frozen=True)
class Finding:
    """One analysis result, naming the file and the rule(s) it is about."""

    severity: str
    kind: str
    rule_ids: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Analysis:
    """All findings, and how strong they are (`exact` = proofs over the interval partition)."""

    findings: tuple[Finding, ...]
    probes: int
    exhaustive: bool
    exact: bool
    real_cases: int

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def method(self) -> str:
        how = "exhaustive interval partition" if self.exhaustive else "seeded random sample"
        extra = f" + {self.real_cases} real cases" if self.real_cases else ""
        proof = "exact" if self.exact else "evidence only (non-interval conditions or sampled)"
        return f"{how} of {self.probes} probe cases{extra}; {proof}"


def analyse_policy(
    policy: Policy,
    schema: dict[str, pl.DataType],
    cases: pl.DataFrame | None = None,
    max_probes: int = 250_000,
    seed: int = 0,
) -> Analysis:
    """Find unreachable rules and contradictory overlaps; the policy must validate first."""
    columns = _referenced_columns(policy, schema)
    values = {c: _representatives(schema[c], lits) for c, lits in columns.items()}
    probes, exhaustive = _probe_frame(values, schema, max_probes, seed)
    exact = exhaustive and all(_is_interval_condition(r.when, schema) for r in policy.rules)
    masks = _masks(policy, probes)
    real_masks = _masks(policy, cases) if cases is not None and cases.height else None
    distinct_masks = set(masks.get_column("m").to_list())
    if real_masks is not None:
        distinct_masks |= set(real_masks.get_column("m").to_list())
    findings = _unreachable(policy, sorted(distinct_masks), ERROR if exact else WARNING)
    findings += _overlaps(policy, probes, masks, real_masks)
    return Analysis(
        findings=tuple(findings),
        probes=probes.height,
        exhaustive=exhaustive,
        exact=exact,
        real_cases=0 if cases is None else cases.height,
    )


def _is_interval_condition(sql: str, schema: dict[str, pl.DataType]) -> bool:
    """True when every atom compares one column with literals (the partition is then exact)."""
    text = re.sub(r"'(?:[^']|'')*'", "''", sql)
    if _ARITHMETIC.search(text):
        return False
    if any(m.group(1).lower() not in _KEYWORDS_BEFORE_PAREN for m in _CALL.finditer(text)):
        return False
    for clause in re.split(r"\b(?:AND|OR)\b|[()]", text, flags=re.IGNORECASE):
        named = {t for t in re.findall(r"[A-Za-z_]\w*", clause) if t in schema}
        if len(named) > 1:
            return False
    return True


def _referenced_columns(policy: Policy, schema: dict[str, pl.DataType]) -> dict[str, list[object]]:
    """Each column the rules name, with the literals compared against it (step 1)."""
    literals: dict[str, list[object]] = {}
    for rule in policy.rules:
        tokens = list(_TOKEN.finditer(rule.when))
        pending: list[object] = []
        last: str | None = None
        for token in tokens:
            if token.lastgroup == "ident":
                name = token.group().strip('"')
                if name.lower() in _CLAUSE_BREAK:
                    last = None
                elif name in schema:
                    literals.setdefault(name, [])
                    literals[name] += pending
                    pending, last = [], name
                continue
            value = _literal(token)
            if last is not None:
                literals[last].append(value)
            else:
                pending.append(value)
    return literals


def _literal(token: re.Match[str]) -> object:
    text = token.group()
    if token.lastgroup == "str":
        return text[1:-1].replace("''", "'")
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def _representatives(dtype: pl.DataType, literals: list[object]) -> list[object]:
    """Values of one column covering every truth value of its comparisons (step 2)."""
    if dtype == pl.Boolean:
        return [True, False, None]
    if dtype.is_numeric():
        numbers = sorted({float(v) for v in literals if isinstance(v, int | float)}) or [0.0]
        if dtype.is_integer():
            picks: set[float] = {math.floor(n) + d for n in numbers for d in (-1, 0, 1)}
            picks |= {math.ceil(n) for n in numbers}
            return [*sorted(int(p) for p in picks), None]
        between = [(a + b) / 2 for a, b in itertools.pairwise(numbers)]
        half = ((numbers[-1] - numbers[0]) or abs(numbers[0]) or 1.0) / 2
        picks = {numbers[0] - half, *numbers, *between, numbers[-1] + half}
        return [*sorted(picks), None]
    if dtype == pl.String:
        texts = sorted({str(v) for v in literals if isinstance(v, str)})
        return [*texts, OTHER_TEXT, None]
    return [None]  # dates, lists...: only NULL is certain to be a value of the column


def _probe_frame(
    values: dict[str, list[object]], schema: dict[str, pl.DataType], max_probes: int, seed: int
) -> tuple[pl.DataFrame, bool]:
    """The cartesian product of representatives, or a seeded sample when it is too large."""
    names = list(values)
    size = math.prod(len(v) for v in values.values()) if names else 1
    out_schema = {c: schema[c] for c in names}
    if size <= max_probes and names:
        # `itertools.product`'s rows (the last column varying fastest), built column by
        # column: a routing step analyses its policy per slice, and 124k rows of Python
        # tuples cost 0.1 s each time.
        product: dict[str, pl.Series] = {}
        repeat = size
        for c in names:
            repeat //= len(values[c])
            picks = (np.arange(size) // repeat) % len(values[c])
            product[c] = pl.Series(c, values[c], dtype=schema[c]).gather(picks)
        return pl.DataFrame(product, schema=out_schema), True
    if size <= max_probes:  # no column referenced: one empty probe, as a frame of rows
        return pl.DataFrame([()], schema=out_schema, orient="row"), True
    rng = np.random.default_rng(seed)
    columns = {
        c: pl.Series(c, values[c], dtype=schema[c]).gather(
            rng.integers(0, len(values[c]), max_probes)
        )
        for c in names
    }
    return pl.DataFrame(columns, schema=out_schema), False


def _columns_of(sql: str) -> list[str]:
    return compile_condition(sql).meta.root_names()


def _masks(policy: Policy, frame: pl.DataFrame) -> pl.DataFrame:
    """Distinct fired-rule masks with one witness row index each."""
    return (
        frame.with_row_index("row")
        .select("row", rule_mask_expr(policy.rules).alias("m"))
        .group_by("m")
        .agg(pl.col("row").min(), pl.len().alias("n"))
    )


def _unreachable(policy: Policy, masks: list[int], severity: str) -> list[Finding]:
    """Rules that fire on no probe, or fire only where another rule decides."""
    deciding: set[str] = set()
    fired: set[str] = set()
    for mask in masks:
        _, _, winner, fired_ids, *_ = route_for_mask(policy, mask)
        fired.update(fired_ids)  # type: ignore[arg-type]
        if winner is not None:
            deciding.add(str(winner))
    findings = []
    for rule in policy.rules:
        if rule.id in deciding:
            continue
        if rule.id not in fired:
            why = "its condition is never true"
        else:
            why = (
                "whenever it fires, a rule of higher precedence or an earlier "
                f"{rule.outcome} rule fires too ({_blockers(policy, rule.id, masks)})"
            )
        findings.append(
            Finding(
                severity,
                "unreachable",
                (rule.id,),
                f"{policy.source}: rule '{rule.id}' is unreachable: {why}; it never decides a case",
            )
        )
    return findings


def _blockers(policy: Policy, rule_id: str, masks: list[int]) -> str:
    """The rules that decide the cases where `rule_id` fires (for the message)."""
    index = next(i for i, r in enumerate(policy.rules) if r.id == rule_id)
    winners = {str(route_for_mask(policy, m)[2]) for m in masks if m >> index & 1 and m != 0} - {
        "None"
    }
    return "decided by " + ", ".join(f"'{w}'" for w in sorted(winners))


def _overlaps(
    policy: Policy, probes: pl.DataFrame, masks: pl.DataFrame, real: pl.DataFrame | None
) -> list[Finding]:
    """Approve/decline rule pairs that fire on the same probe, with a witness case."""
    approves = [(i, r) for i, r in enumerate(policy.rules) if r.outcome == AUTO_APPROVE]
    declines = [(i, r) for i, r in enumerate(policy.rules) if r.outcome == AUTO_DECLINE]
    findings = []
    for (i, approve), (j, decline) in itertools.product(approves, declines):
        both = (1 << i) | (1 << j)
        hits = masks.filter((pl.col("m") & both) == both)
        if hits.height == 0:
            continue
        row = probes.row(int(cast(int, hits.get_column("row").min())), named=True)
        named = {*_columns_of(approve.when), *_columns_of(decline.when)}
        wanted = [c for c in probes.columns if c in named]
        witness = ", ".join(f"{c}={row[c]!r}" for c in wanted)
        in_real = ""
        if real is not None:
            count = int(real.filter((pl.col("m") & both) == both).get_column("n").sum())
            in_real = f"; {count} of the given real cases are in the overlap"
        winner = PRECEDENCE[min(PRECEDENCE.index(AUTO_APPROVE), PRECEDENCE.index(AUTO_DECLINE))]
        findings.append(
            Finding(
                WARNING,
                "contradictory_overlap",
                (approve.id, decline.id),
                f"{policy.source}: rules '{approve.id}' (auto_approve) and '{decline.id}' "
                f"(auto_decline) both fire, e.g. for {witness}; {winner} wins by "
                f"precedence{in_real}",
            )
        )
    return findings

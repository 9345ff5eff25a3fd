"""Policy tests: each policy file ships a YAML file of cases with the route they must get.

`policies/<domain>/v2.yaml` is tested by `policies/<domain>/v2.cases.yaml`:

```yaml
defaults:               # column values every case starts from (optional)
  pd: 0.005
  risk_band: A
cases:
  - name: band C goes to a credit analyst
    case: {risk_band: C, pd: 0.03}
    expect:
      route: human_review          # required
      reason_code: H08             # required
      rules_fired: [REV-BAND-C]    # required: every rule that fires, in file order
      rule: REV-BAND-C             # optional: the deciding rule (null = default route)
      queue: credit_analyst        # optional, like priority and four_eyes
```

Why these rules: a case must give every column the policy reads (write `null` for a missing
value), so a test never passes because of an accidental NULL; every rule must fire in at least
one case, so a rule nobody tested cannot go live; the cases run through the production engine
(`route_cases`), not a copy of it. The policy's own route is tested: QA sampling, the kill
switch and capacity act after it and are tested separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from hitl_gate.core.yaml_files import read_yaml
from policies.engine import route_cases
from policies.expressions import compile_condition
from policies.model import Policy, PolicyError, load_policy, policy_columns

CASES_SUFFIX = ".cases.yaml"
# Expected field -> the route column it is compared with.
EXPECT_COLUMNS: dict[str, str] = {
    "route": "route",
    "reason_code": "route_reason_code",
    "rules_fired": "rules_fired",
    "rule": "route_rule_id",
    "queue": "review_queue",
    "priority": "review_priority",
    "four_eyes": "four_eyes",
}
REQUIRED_EXPECT = ("route", "reason_code", "rules_fired")


def cases_path(policy_path: Path) -> Path:
    """The test file of a policy file: `v2.yaml` -> `v2.cases.yaml`, in the same folder."""
    return policy_path.with_name(policy_path.name.removesuffix(".yaml") + CASES_SUFFIX)


@dataclass(frozen=True)
class PolicyCase:
    """One test case: column values and the expected route fields."""

    name: str
    index: int
    values: dict[str, Any]
    expect: dict[str, Any]

    @property
    def label(self) -> str:
        return f"case '{self.name}' (#{self.index + 1})"


@dataclass(frozen=True)
class PolicyTestReport:
    """The result of a policy's test file; `passed` only with no failure at all."""

    policy: str
    suite: str
    cases: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        state = "PASS" if self.passed else f"FAIL ({len(self.failures)} problem(s))"
        return f"{self.suite}: {self.cases} cases for {self.policy}: {state}"


def check_policy_file(policy_path: Path, schema: Mapping[str, pl.DataType]) -> PolicyTestReport:
    """Load a policy file and run its cases; a missing or unreadable test file is a failure."""
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        suite = str(cases_path(policy_path))
        return PolicyTestReport(policy_path.name, suite, 0, [str(exc)])
    return run_policy_tests(policy, cases_path(policy_path), schema)


def run_policy_tests(
    policy: Policy, suite: Path, schema: Mapping[str, pl.DataType]
) -> PolicyTestReport:
    """Run the cases of `suite` against `policy`, typed by the domain's case `schema`."""
    label = policy.version
    if not suite.is_file():
        return PolicyTestReport(label, str(suite), 0, [f"{suite}: no test file for this policy"])
    try:
        cases = load_cases(suite)
    except PolicyError as exc:
        return PolicyTestReport(label, str(suite), 0, [str(exc)])
    failures = _input_problems(policy, cases, schema, suite)
    if failures:
        return PolicyTestReport(label, str(suite), len(cases), failures)
    try:
        routed = route_cases(policy, _case_frame(cases, schema))
    except PolicyError as exc:
        return PolicyTestReport(label, str(suite), len(cases), [f"{suite}: {exc}"])
    rows = routed.select(list(EXPECT_COLUMNS.values())).rows(named=True)
    for case, row in zip(cases, rows, strict=True):
        failures += _mismatches(suite, case, row)
    fired = {rule for row in rows for rule in row["rules_fired"]}
    untested = [r.id for r in policy.rules if r.id not in fired]
    if untested:
        failures.append(f"{suite}: rules that fire in no case (add a case for each): {untested}")
    return PolicyTestReport(label, str(suite), len(cases), failures)


def load_cases(path: Path) -> list[PolicyCase]:
    """Parse a test file; every structural problem is reported at once, naming the case."""
    raw = read_yaml(path, "policy test file", PolicyError)
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), list) or not raw["cases"]:
        raise PolicyError(f"{path}: a test file is a mapping with a non-empty list `cases`")
    unknown = sorted(set(raw) - {"defaults", "cases"})
    defaults = raw.get("defaults") or {}
    problems = [f"{path}: unknown top-level fields {unknown}"] if unknown else []
    if not isinstance(defaults, dict):
        problems.append(f"{path}: defaults must map column names to values")
        defaults = {}
    cases, names = [], set()
    for index, item in enumerate(raw["cases"]):
        case, case_problems = _parse_case(path, index, item, defaults)
        if case.name in names:
            case_problems.append(f"{path}: {case.label}: duplicate case name")
        names.add(case.name)
        cases.append(case)
        problems += case_problems
    if problems:
        raise PolicyError("\n".join(problems))
    return cases


def _parse_case(
    path: Path, index: int, item: Any, defaults: dict[str, Any]
) -> tuple[PolicyCase, list[str]]:
    if not isinstance(item, dict):
        item = {}
    name = str(item.get("name") or f"cases[{index}]")
    values, expect = item.get("case") or {}, item.get("expect")
    case = PolicyCase(name, index, {}, {})
    where = f"{path}: {case.label}"
    problems = []
    unknown = sorted(set(item) - {"name", "case", "expect"})
    if unknown:
        problems.append(f"{where}: unknown fields {unknown}")
    if not item.get("name"):
        problems.append(f"{where}: name is missing")
    if not isinstance(values, dict):
        problems.append(f"{where}: case must map column names to values")
        values = {}
    if not isinstance(expect, dict):
        return case, [*problems, f"{where}: expect must be a mapping with {list(REQUIRED_EXPECT)}"]
    missing = [k for k in REQUIRED_EXPECT if k not in expect]
    extra = sorted(set(expect) - set(EXPECT_COLUMNS))
    if missing:
        problems.append(f"{where}: expect is missing {missing}")
    if extra:
        problems.append(f"{where}: expect has unknown fields {extra}")
    if not isinstance(expect.get("rules_fired", []), list):
        problems.append(f"{where}: expect.rules_fired must be a list of rule ids")
    return PolicyCase(name, index, {**defaults, **values}, dict(expect)), problems


def _input_problems(
    policy: Policy, cases: list[PolicyCase], schema: Mapping[str, pl.DataType], suite: Path
) -> list[str]:
    """Columns a case must give (every column the policy reads) and values of the right type."""
    needed = set(policy_columns(policy))
    for rule in policy.rules:
        needed.update(compile_condition(rule.when).meta.root_names())
    problems = []
    for case in cases:
        where = f"{suite}: {case.label}"
        missing = sorted(needed - set(case.values))
        if missing:
            problems.append(f"{where}: no value for columns {missing} (write null for missing)")
        for column, value in case.values.items():
            if column not in schema:
                problems.append(f"{where}: unknown column '{column}'")
            elif not _fits(value, schema[column]):
                problems.append(f"{where}: column '{column}' is {schema[column]}, got {value!r}")
    return problems


def _fits(value: Any, dtype: pl.DataType) -> bool:
    """Whether a YAML value can be a value of a column of `dtype` (None always can)."""
    if value is None:
        return True
    if dtype == pl.Boolean:
        return isinstance(value, bool)
    if dtype.is_integer():
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype.is_numeric():
        return isinstance(value, int | float) and not isinstance(value, bool)
    if dtype == pl.String:
        return isinstance(value, str)
    return True  # dates and others: Polars converts or raises, named below


def _case_frame(cases: list[PolicyCase], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """One row per case, typed by the domain's schema."""
    columns = sorted({c for case in cases for c in case.values})
    return pl.DataFrame(
        {c: pl.Series(c, [case.values.get(c) for case in cases], dtype=schema[c]) for c in columns}
    )


def _mismatches(suite: Path, case: PolicyCase, row: dict[str, Any]) -> list[str]:
    """One message per case naming every field that differs, and the rule that decided."""
    diffs = []
    for key, value in case.expect.items():
        got = row[EXPECT_COLUMNS[key]]
        if key == "rules_fired":
            got = list(got)
        if got != value:
            diffs.append(f"{key}: expected {value!r}, got {got!r}")
    if not diffs:
        return []
    decided = (
        f"rule '{row['route_rule_id']}'" if row["route_rule_id"] is not None else "default route"
    )
    return [
        f"{suite}: {case.label}: " + "; ".join(diffs) + f" (decided by {decided}, reason "
        f"{row['route_reason_code']}, rules fired {list(row['rules_fired'])})"
    ]

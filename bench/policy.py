"""Policy engine throughput: 1M cases, a 20-rule policy, fired-rule lists and reason codes.

Compares `policies.engine.route_cases` (bitmask, one lookup per distinct mask) with a
row-by-row reference that evaluates the same 20 rules in Python per case, in the same run, and
checks that both give the same routes, reason codes and fired-rule lists on the reference's
rows. Run: `.venv/bin/python -m bench.policy [--rows 1000000] [--reference-rows 100000]`.
"""

from __future__ import annotations

import argparse
import operator
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from policies.engine import load_policy, route_cases

PRECEDENCE = ("auto_decline", "human_review", "auto_approve")
OPS: dict[str, Callable[[object, object], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}
# (id, outcome, [(column, op, value), ...] joined by AND): 20 rules over 6 columns.
RULES: list[tuple[str, str, list[tuple[str, str, object]]]] = [
    ("D1", "auto_decline", [("pd", ">=", 0.08)]),
    ("D2", "auto_decline", [("bankrupt", ">=", 2)]),
    ("D3", "auto_decline", [("delinq", ">=", 4), ("pd", ">=", 0.04)]),
    ("D4", "auto_decline", [("dti", ">=", 80)]),
    ("D5", "auto_decline", [("band", "=", "E"), ("amount", ">=", 20000)]),
    ("R1", "human_review", [("amount", ">=", 35000)]),
    ("R2", "human_review", [("amount", ">=", 25000), ("pd", ">=", 0.02)]),
    ("R3", "human_review", [("delinq", ">=", 2)]),
    ("R4", "human_review", [("dti", ">=", 45)]),
    ("R5", "human_review", [("band", "=", "D")]),
    ("R6", "human_review", [("band", "=", "C"), ("amount", ">=", 10000)]),
    ("R7", "human_review", [("bankrupt", ">=", 1)]),
    ("R8", "human_review", [("pd", ">=", 0.05)]),
    ("R9", "human_review", [("dti", ">=", 35), ("delinq", ">=", 1)]),
    ("R10", "human_review", [("amount", "<", 1000)]),
    ("A1", "auto_approve", [("band", "=", "A")]),
    ("A2", "auto_approve", [("band", "=", "B"), ("dti", "<", 30)]),
    ("A3", "auto_approve", [("pd", "<", 0.015)]),
    ("A4", "auto_approve", [("band", "=", "C"), ("amount", "<", 5000)]),
    ("A5", "auto_approve", [("pd", "<", 0.03), ("delinq", "<", 1)]),
]


def _sql(atoms: list[tuple[str, str, object]]) -> str:
    return " AND ".join(f"{c} {op} {v!r}" if isinstance(v, str) else f"{c} {op} {v}"
                        for c, op, v in atoms)  # fmt: skip


def write_policy(folder: Path) -> Path:
    """The 20-rule benchmark policy as a policy file (review rules alternate two queues)."""
    rules = []
    for i, (rule_id, outcome, atoms) in enumerate(RULES):
        rule = {"id": rule_id, "text": rule_id, "when": _sql(atoms), "outcome": outcome,
                "reason_code": f"C-{rule_id}"}  # fmt: skip
        if outcome == "human_review":
            rule |= {"queue": f"q{i % 2}", "priority": 1 + i % 3}
        rules.append(rule)
    data = {"version": "bench-20", "owner": "bench", "effective_date": "2020-01-01",
            "description": "benchmark", "default_outcome": "human_review",
            "default_queue": "q0", "default_priority": 3, "rules": rules}  # fmt: skip
    path = folder / "bench_policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_cases(n: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "pd": rng.beta(1.2, 40, n),
            "bankrupt": rng.poisson(0.15, n),
            "delinq": rng.poisson(0.4, n),
            "dti": rng.gamma(4, 5, n).round(1),
            "amount": rng.integers(500, 40_000, n).astype(float),
            "band": rng.choice(list("ABCDE"), n, p=[0.3, 0.3, 0.2, 0.15, 0.05]),
        }
    )


def reference(cases: pl.DataFrame) -> list[tuple[str, str, list[str]]]:
    """Row by row: evaluate every rule per case, then apply precedence (no nulls generated)."""
    compiled = [(rid, out, [(c, OPS[op], v) for c, op, v in atoms]) for rid, out, atoms in RULES]
    results = []
    for row in cases.iter_rows(named=True):
        fired = [(rid, out) for rid, out, atoms in compiled
                 if all(op(row[c], v) for c, op, v in atoms)]  # fmt: skip
        route, code = "human_review", "DEFAULT"
        for outcome in PRECEDENCE:
            winner = next((rid for rid, out in fired if out == outcome), None)
            if winner is not None:
                route, code = outcome, f"C-{winner}"
                break
        results.append((route, code, [rid for rid, _ in fired]))
    return results


def _median_seconds(func: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        policy = load_policy(write_policy(Path(folder)))
    cases = make_cases(args.rows)
    load_before = os.getloadavg()[0]
    route_cases(policy, cases.head(1000))  # warm-up (expression compilation, thread pool)
    engine_s, routed = _median_seconds(lambda: route_cases(policy, cases), args.repeats)
    sample = cases.head(args.reference_rows)
    ref_s, ref = _median_seconds(lambda: reference(sample), max(1, args.repeats // 2 + 1))
    got = routed.head(args.reference_rows).select("route", "route_reason_code", "rules_fired")
    assert got.rows() == ref, "engine and reference disagree"  # type: ignore[comparison-overlap]
    engine_rate = args.rows / engine_s
    ref_rate = args.reference_rows / ref_s
    distinct = routed.select(pl.col("rules_fired").list.join(",")).n_unique()
    print(f"policy: {len(policy.rules)} rules, {args.rows:,} cases, {distinct} distinct fired sets")
    print(f"  engine (bitmask + lookup), median of {args.repeats}: {engine_s:.3f} s "
          f"= {engine_rate / 1e6:.2f} M cases/s")  # fmt: skip
    print(f"  row-by-row reference on {args.reference_rows:,} cases: {ref_s:.3f} s "
          f"= {ref_rate / 1e3:.0f} k cases/s")  # fmt: skip
    print(f"  ratio: {engine_rate / ref_rate:.0f}x; outputs identical on the reference rows")
    print(f"  load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

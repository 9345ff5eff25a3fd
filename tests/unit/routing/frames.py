"""Small hand-built routing inputs: a policy with capacity and QA sampling, and days of cases.

The domain is `consumer_credit` for its names only (case id, event time); the policy is this
module's own, so every rule and number the tests rely on is visible here.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import yaml

from hitl_gate.core.domain import DomainConfig, load_domain
from policies.model import Policy, load_policy

D1, D2 = date(2018, 3, 5), date(2018, 3, 6)

POLICY = {
    "version": "unit-v1", "owner": "o@example", "effective_date": "2018-01-01",
    "description": "routing rules for unit tests", "default_outcome": "human_review",
    "default_reason_code": "H99", "default_queue": "analyst", "default_priority": 3,
    "queues": {"analyst": {"daily_capacity": 2}, "qa_review": {"daily_capacity": 1}},
    "capacity_order": ["pd"],
    "qa_sampling": {"rate": 0.2, "strata_column": "risk_band", "min_per_stratum": 1,
                    "queue": "qa_review", "priority": 3},
    "rules": [
        {"id": "DEC-PD", "text": "Very high  risk.", "when": "pd >= 0.5",
         "outcome": "auto_decline", "reason_code": "D01"},
        {"id": "REV-AMOUNT", "text": "A large loan.", "when": "loan_amount >= 30000",
         "outcome": "human_review", "reason_code": "H01", "queue": "analyst", "priority": 1},
        {"id": "APP-LOW", "text": "Low risk.", "when": "pd < 0.1",
         "outcome": "auto_approve", "reason_code": "A01"},
    ],
}  # fmt: skip


def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def policy(folder: Path, **changes: object) -> Policy:
    path = folder / "unit-policy.yaml"
    path.write_text(yaml.safe_dump({**POLICY, **changes}), encoding="utf-8")
    return load_policy(path)


def stages(rows: list[tuple[str, date, float, int]]) -> tuple[pl.DataFrame, ...]:
    """`validated_cases`, `case_features`, `risk_scores` of cases (id, day, pd, loan amount)."""
    ids = [r[0] for r in rows]
    days = [r[1] for r in rows]
    n = len(rows)
    validated = pl.DataFrame(
        {
            "application_id": ids,
            "application_time": [datetime(d.year, d.month, d.day, 9) for d in days],
            "loan_amount": [r[3] for r in rows],
            "annual_income": [50000.0] * n,
            "partition_date": days,
            "_source_file": ["day.csv"] * n,
            "_source_sha256": ["ab" * 32] * n,
            "_source_row": list(range(n)),
            "_contract_version": ["1"] * n,
            "_contract_digest": ["cd" * 32] * n,
        }
    )
    features = pl.DataFrame(
        {
            "application_id": ids,
            "partition_date": days,
            "annual_income": [50000.0] * n,
            "feature_service": ["svc"] * n,
            "feature_digest": ["fd"] * n,
        }
    )
    pds = [r[2] for r in rows]
    scores = pl.DataFrame(
        {
            "application_id": ids,
            "partition_date": days,
            "model_name": ["m"] * n,
            "model_version": ["3"] * n,
            "model_run_id": ["run"] * n,
            "model_artifact_digest": ["md"] * n,
            "pd": pds,
            "score": [int(700 - 300 * p) for p in pds],
            "risk_band": ["A" if p < 0.1 else "C" if p < 0.5 else "E" for p in pds],
            "reason_codes": [["R1", "R2"]] * n,
        }
    )
    return validated, features, scores


def day_of_cases(n: int = 40, day: date = D1, prefix: str = "c") -> list[tuple]:
    """`n` cases with every route: declines, large loans for review, approvals, defaults."""
    pds = [0.02, 0.6, 0.3, 0.05, 0.2, 0.08, 0.7, 0.01]
    amounts = [5000, 8000, 12000, 40000, 9000, 31000, 3000, 2000]
    return [
        (f"{prefix}{i:03d}", day, pds[i % len(pds)] + i / 10_000, amounts[i % len(amounts)])
        for i in range(n)
    ]

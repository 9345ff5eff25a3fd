"""Generated credit histories with planted traps: protected attributes, a decision copy, a
post-decision column, a multi-valued text column and a sentinel code (issue 20's tests).

Seeded, small and fast: the risk comes from income, debt and employment type only, so any
model that finds race, age or sex useful, or reaches an AUC near 1, has been handed a trap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

RACES = ("White", "Black", "Asian", "Hispanic")


def credit_history(n: int = 800, seed: int = 7) -> pl.DataFrame:
    """`n` past applications with a `loan_outcome` (`default` / `repaid`) and planted traps.

    - `applicant_race`, `applicant_sex`, `applicant_age`, `marital_status`: protected;
    - `zip3`: a column the owner would declare as a proxy;
    - `action_taken`: a copy of the outcome coded as numbers (named like a decision);
    - `monthly_spend`: behaviour after the decision, almost a function of the outcome;
    - `employment_type`: four text values, a real predictor;
    - `bureau_score`: 999 means "no file" (a sentinel), otherwise 300-850.
    """
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.8, 0.4, n)
    debt_ratio = rng.uniform(0, 60, n)
    employment = rng.choice(["salaried", "self_employed", "contract", "unemployed"], n)
    employment_risk = np.select(
        [employment == "unemployed", employment == "contract", employment == "self_employed"],
        [1.2, 0.5, 0.3],
        0.0,
    )
    logit = -2.2 + 0.04 * (debt_ratio - 30) - 0.8 * (np.log(income) - 10.8) + employment_risk
    bad = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))
    score = np.clip(700 - 60 * bad + rng.normal(0, 50, n), 300, 850).round()
    score = np.where(rng.uniform(0, 1, n) < 0.08, 999, score)
    return pl.DataFrame(
        {
            "loan_ref": [f"L{i:05d}" for i in range(n)],
            "income": income.round(0),
            "debt_ratio": debt_ratio.round(1),
            "employment_type": employment,
            "bureau_score": score.astype(np.int64),
            "applicant_race": rng.choice(RACES, n, p=[0.6, 0.2, 0.1, 0.1]),
            "applicant_sex": rng.choice(["Male", "Female"], n),
            "applicant_age": rng.integers(18, 80, n),
            "marital_status": rng.choice(["married", "single", "separated"], n),
            "zip3": rng.integers(100, 999, n).astype(str),
            "action_taken": np.where(bad, 3, 1),
            "monthly_spend": (np.where(bad, 50.0, 900.0) + rng.normal(0, 60, n)).round(2),
            "loan_outcome": np.where(bad, "default", "repaid"),
        }
    )


def write_history(folder: Path, n: int = 800, seed: int = 7) -> Path:
    """`credit_history` as a Parquet file in `folder`."""
    path = folder / "history.parquet"
    credit_history(n, seed).write_parquet(path)
    return path


def mortgage_history(n: int = 1200, seed: int = 11) -> pl.DataFrame:
    """Applications shaped like a public mortgage register (HMDA-style names and codes).

    `action_taken` is the decision (1 originated, 3 denied) and the label; `denial_reason-1`
    (10 = not applicable) and `interest_rate` / `rate_spread` (only for originated loans) are
    copies of it. Race, ethnicity, sex and age come both as text (`derived_*`) and as numeric
    codes (`applicant_race-1`, `applicant_sex`), as the register publishes them.
    """
    rng = np.random.default_rng(seed)
    income = rng.lognormal(4.4, 0.5, n).round(0)  # thousands
    amount = (income * rng.uniform(1.5, 5.0, n)).round(-1) * 1000
    dti = rng.choice(["<20%", "20%-<30%", "30%-<36%", "36", "40", "45", "50%-60%"], n)
    dti_risk = np.select([dti == "50%-60%", dti == "45", dti == "40"], [1.4, 0.9, 0.5], 0.0)
    logit = -2.0 + dti_risk - 0.6 * (np.log(income) - 4.4) + 0.3 * (amount / income / 1000 - 3)
    denied = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))
    race = rng.choice(
        ["White", "Black or African American", "Asian", "Race Not Available"],
        n,
        p=[0.65, 0.15, 0.1, 0.1],
    )
    race_code = np.select(
        [race == "White", race == "Black or African American", race == "Asian"], [5, 3, 2], 7
    )
    sex = rng.choice(["Male", "Female", "Joint", "Sex Not Available"], n, p=[0.45, 0.3, 0.2, 0.05])
    return pl.DataFrame(
        {
            "loan_amount": amount,
            "income": income,
            "debt_to_income_ratio": dti,
            "loan_purpose": rng.choice([1, 2, 31, 32], n),
            "property_value": (amount * rng.uniform(1.1, 2.0, n)).round(-3),
            "derived_race": race,
            "derived_ethnicity": rng.choice(
                ["Hispanic or Latino", "Not Hispanic or Latino", "Ethnicity Not Available"], n
            ),
            "derived_sex": sex,
            "applicant_race-1": race_code,
            "applicant_sex": np.select([sex == "Male", sex == "Female"], [1, 2], 3),
            "applicant_age": rng.choice(["<25", "25-34", "35-44", "45-54", "55-64", "65-74"], n),
            "census_tract": rng.integers(10**9, 10**9 + 500, n).astype(str),
            "denial_reason-1": np.where(denied, rng.choice([1, 3, 4], n), 10),
            "interest_rate": np.where(denied, np.nan, rng.uniform(5.5, 7.5, n).round(3)),
            "rate_spread": np.where(denied, np.nan, rng.uniform(0.0, 1.5, n).round(3)),
            "action_taken": np.where(denied, 3, 1),
        },
    ).with_columns(pl.col("interest_rate", "rate_spread").fill_nan(None))

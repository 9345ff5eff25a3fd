"""Small routed review frames from a shipped domain's real sample, without a demo run.

Real applications (the domain's sample file) get their derived features from the domain's own
SQL and are routed by the domain's own policy; only the model is stood in for: a transparent
score from the features' ranks, so PDs spread over every band and reasons cite real features.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.app.demo_data import sample_applications
from hitl_gate.core.database import query_frame
from hitl_gate.core.domain import DomainConfig
from policies.engine import route_cases
from policies.model import Policy, load_policy
from policies.qa import QA_REASON_CODE

MAX_REASONS = 4


def with_features(domain: DomainConfig, applications: pl.DataFrame) -> pl.DataFrame:
    """The applications plus the domain's derived features, computed by its declared SQL."""
    derived = ", ".join(f"({sql}) AS {name}" for name, sql in domain.features.derived.items())
    con = duckdb.connect()
    try:
        con.register("applications", applications.to_arrow())
        return query_frame(con, f"SELECT *, {derived} FROM applications")
    finally:
        con.close()


def stand_in_scores(domain: DomainConfig, cases: pl.DataFrame) -> pl.DataFrame:
    """PD, score, band and reasons from the features' centred ranks (a stand-in for the model)."""
    model = domain.model
    parts = []
    for name in model.features:
        sign = -1.0 if model.reason_codes[name].risk_direction == "lower" else 1.0
        rank = pl.col(name).cast(pl.Float64).rank() / pl.col(name).count() - 0.5
        parts.append((sign * rank).fill_null(0.0).alias(name))
    contrib = cases.select(parts)
    logit = contrib.sum_horizontal() * 1.2 - 3.2
    pd_ = 1.0 / (1.0 + (-logit).exp())
    bounds = list(model.bands.values())
    bands = [list(model.bands)[min(sum(p > b for b in bounds), len(bounds) - 1)] for p in pd_]
    codes, texts = [], []
    for row in contrib.iter_rows():
        ranked = sorted(
            ((v, f) for v, f in zip(row, model.features, strict=True) if v > 0.05), reverse=True
        )[:MAX_REASONS]
        codes.append([model.reason_codes[f].code for _, f in ranked])
        texts.append([model.reason_codes[f].text for _, f in ranked])
    return cases.with_columns(
        pl.Series("pd", pd_, dtype=pl.Float64),
        pl.Series("score", [round(600 + 28.85 * math.log((1 - p) / p)) for p in pd_]),
        pl.Series("risk_band", bands, dtype=pl.String),
        pl.Series("reason_codes", codes, dtype=pl.List(pl.String)),
        pl.Series("reason_texts", texts, dtype=pl.List(pl.String)),
    )


def routed_review_cases(domain: DomainConfig, rows: int = 400, keep: int = 24) -> pl.DataFrame:
    """Up to `keep` real cases the domain's policy sends to review, plus one QA-sampled case
    with no model reason (the two kinds of case a reviewer must be told about)."""
    policy: Policy = load_policy(Path(domain.policy))
    sample = sample_applications(domain).head(rows)
    cases = stand_in_scores(domain, with_features(domain, sample))
    routed = route_cases(policy, cases).with_columns(
        pl.lit(False).alias("qa_sample"),
        pl.lit(date(2018, 3, 1)).alias("partition_date"),
        pl.lit(policy.version).alias("policy_version"),
        pl.lit(policy.digest).alias("policy_digest"),
        pl.lit(domain.model.name).alias("model_name"),
        pl.lit("1").alias("model_version"),
        pl.lit(domain.features.service).alias("feature_service"),
    )
    review = routed.filter(pl.col("route") == "human_review").head(keep)
    qa = policy.qa_sampling
    sampled = (
        routed.filter(pl.col("route") == "auto_approve")
        .head(1)
        .with_columns(
            pl.lit("human_review").alias("route"),
            pl.lit(QA_REASON_CODE).alias("route_reason_code"),
            pl.lit(qa.queue if qa else policy.default_queue).alias("review_queue"),
            pl.lit(qa.priority if qa else 3, dtype=review["review_priority"].dtype).alias(
                "review_priority"
            ),
            pl.lit(True).alias("qa_sample"),
            pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"),
            pl.lit([], dtype=pl.List(pl.String)).alias("reason_texts"),
        )
    )
    return pl.concat([review, sampled], how="vertical_relaxed")

"""The bad rate to expect per route: what a policy change does to risk, not only to workload.

Two figures per (policy, route), on the same replayed cases:
- `expected_bad_rate`: the mean predicted probability of the bad outcome (`pd`) of the cases
  the route takes, i.e. the model's forecast of the share that will go bad (cases without a
  score are left out of the mean and counted in `without_pd`);
- `observed_bad_rate`: among those cases whose outcome is known (audit table `outcomes`, the
  latest observation per case), the share that went bad (the domain's positive label values).
The forecast covers every case; the observation only those already matured, and it is biased
by what was done (a declined loan has no repayment outcome), so both are shown side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from hitl_gate.core.database import query_frame

ROUTES = ("auto_approve", "human_review", "auto_decline")

LATEST_OUTCOMES_SQL = """
SELECT case_id, arg_max(outcome, observed_on) AS outcome
FROM outcomes WHERE domain = ? GROUP BY case_id
"""


def latest_outcomes(con: duckdb.DuckDBPyConnection, domain: str) -> pl.DataFrame:
    """(case_id, outcome): the latest recorded outcome of each case of `domain`."""
    return query_frame(con, LATEST_OUTCOMES_SQL, [domain])


def route_risk(
    routed: dict[str, pl.DataFrame],
    case_id: str,
    outcomes: pl.DataFrame | None,
    bad_outcomes: Sequence[str],
) -> pl.DataFrame:
    """Per policy name in `routed` (its decided rows: `case_id`, `route`, `pd`) and route:
    cases, share, expected and observed bad rate (see the module docstring)."""
    known = (
        outcomes.select(pl.col("case_id").cast(pl.String).alias(case_id), "outcome")
        if outcomes is not None and outcomes.height
        else pl.DataFrame(schema={case_id: pl.String, "outcome": pl.String})
    )
    bad = pl.col("outcome").is_in(list(bad_outcomes))
    rows = []
    for name, decided in routed.items():
        frame = decided.select(
            pl.col(case_id).cast(pl.String), "route", pl.col("pd").cast(pl.Float64)
        ).join(known, on=case_id, how="left")
        per_route = frame.group_by("route").agg(
            pl.len().cast(pl.Int64).alias("cases"),
            pl.col("pd").mean().alias("expected_bad_rate"),
            pl.col("pd").null_count().cast(pl.Int64).alias("without_pd"),
            pl.col("outcome").is_not_null().sum().cast(pl.Int64).alias("with_outcome"),
            bad.sum().cast(pl.Int64).alias("bad"),
        )
        template = pl.DataFrame({"route": list(ROUTES)})
        rows.append(
            template.join(per_route, on="route", how="left")
            .with_columns(pl.col("cases", "without_pd", "with_outcome", "bad").fill_null(0))
            .with_columns(
                pl.lit(name).alias("policy"),
                (pl.col("cases") / max(frame.height, 1)).alias("share"),
                pl.when(pl.col("with_outcome") > 0)
                .then(pl.col("bad") / pl.col("with_outcome"))
                .alias("observed_bad_rate"),
            )
        )
    return pl.concat(rows).select(
        "policy", "route", "cases", "share", "expected_bad_rate", "without_pd",
        "with_outcome", "bad", "observed_bad_rate",
    )  # fmt: skip

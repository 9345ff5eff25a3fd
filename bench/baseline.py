"""The hand-written baseline: the daily work in one process, no orchestration, no Feast.

It does what the pipeline must do for a day, as a careful engineer would write it as one
script: read the day's files with typed columns, hold them to the contract (nulls, bounds,
allowed values, unique ids), compute features and join them point in time with a DuckDB
ASOF join (TTL applied), score with the champion model called directly (PD, points, band,
reason codes), route with the policy engine, write decisions to DuckDB and Parquet and the
cases for review to one CSV. The ratio pipeline/baseline is the price of everything else
the layer does (lineage, quarantine detail, signed review workbooks, checks, Dagster).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.home import HitlPaths
from hitl_gate.quality.contract import polars_dtype


def _read_day(domain: DomainConfig, folder: Path) -> pl.DataFrame:
    """Every CSV or Parquet file of the day, typed by the contract at read time."""
    schema = {name: polars_dtype(col) for name, col in domain.contract.columns.items()}
    frames = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".csv":
            frames.append(pl.read_csv(path, schema_overrides=schema, columns=list(schema)))
        elif path.suffix == ".parquet":
            frames.append(pl.read_parquet(path, columns=list(schema)).cast(schema))
    return pl.concat(frames, how="vertical_relaxed")


def _valid_mask(domain: DomainConfig, frame: pl.DataFrame) -> pl.Expr:
    """True for rows meeting every column rule of the contract and with a first-seen id."""
    rules = [pl.col(domain.case_id).is_first_distinct()]
    for name, col in domain.contract.columns.items():
        c = pl.col(name)
        if not col.nullable or name == domain.case_id:
            rules.append(c.is_not_null())
        if col.min is not None:
            rules.append(c.is_null() | (c >= col.min))
        if col.max is not None:
            rules.append(c.is_null() | (c <= col.max))
        if col.allowed is not None:
            allowed = pl.Series(col.allowed).cast(polars_dtype(col))
            rules.append(c.is_null() | c.is_in(allowed.implode()))
    return pl.all_horizontal(rules)


def _point_in_time(
    domain: DomainConfig, features: pl.DataFrame, entities: pl.DataFrame, scratch: Path
) -> pl.DataFrame:
    """Features as of each entity's time: write the offline file, ASOF-join it back in DuckDB."""
    source = scratch / "features.parquet"
    features.write_parquet(source)
    key, names = domain.case_id, domain.features.names
    ttl = timedelta(days=domain.features.ttl_days)
    con = duckdb.connect()
    try:
        con.register("entities", entities.to_arrow())
        joined = con.sql(
            "SELECT e.*, f.event_timestamp AS _feature_time, "
            + ", ".join(f'f."{n}"' for n in names)
            + " FROM entities e ASOF LEFT JOIN read_parquet(?) f "
            f'ON e."{key}" = f."{key}" AND e.event_timestamp >= f.event_timestamp',
            params=[str(source)],
        ).pl()
    finally:
        con.close()
    stale = pl.col("_feature_time") < pl.col("event_timestamp") - ttl
    return joined.with_columns(
        pl.when(stale).then(None).otherwise(pl.col(n)).alias(n) for n in names
    ).drop("_feature_time")


@dataclass(frozen=True)
class BaselineDay:
    """What the baseline decided for a day: the frames the floor's extra work reads."""

    files: list[Path]  # the day's landing files, in reading order
    flagged: pl.DataFrame  # every row read, `_valid` False for those the contract refuses
    case_features: pl.DataFrame  # features as of each valid case's time (point in time)
    routed: pl.DataFrame  # one row per valid case: inputs, features, scores, route
    decisions_db: Path  # the DuckDB file holding table `decisions`

    @property
    def quarantined(self) -> int:
        return self.flagged.height - int(self.flagged["_valid"].sum())


def run_baseline(paths: HitlPaths, domain: DomainConfig, day: date, scratch: Path) -> dict:
    """Process `day` end to end; return counts per route (the timed work is all in here)."""
    done = decide_day(paths, domain, day, scratch)
    routes = dict(done.routed.group_by("route").len().iter_rows())
    return {"quarantined": done.quarantined, **routes}


def decide_day(paths: HitlPaths, domain: DomainConfig, day: date, scratch: Path) -> BaselineDay:
    """The baseline's work for `day`: read, validate, features, score, route, write."""
    from features.engineering import compute_features, utc_timestamps
    from hitl_gate.routing.cases import assemble_cases
    from models.scoring import load_champion, score_frame
    from policies.engine import load_policy, route_cases

    scratch.mkdir(parents=True, exist_ok=True)
    folder = paths.landing / domain.landing_subdir / day.isoformat()
    files = sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".parquet"))
    frame = _read_day(domain, folder)
    flagged = frame.with_columns(_valid=_valid_mask(domain, frame))
    valid = flagged.filter(pl.col("_valid")).drop("_valid")

    features = compute_features(valid, domain)
    entities = valid.select(
        domain.case_id,
        utc_timestamps(pl.col(domain.event_time), valid.schema[domain.event_time]).alias(
            "event_timestamp"
        ),
    )
    case_features = _point_in_time(domain, features, entities, scratch)

    champion = load_champion(domain.model.name, paths.mlflow_dir)
    scores = score_frame(champion, case_features, domain.model, domain.case_id)

    cases = assemble_cases(domain, valid, case_features, scores)
    routed = route_cases(load_policy(domain.policy_path), cases)

    decisions = routed.drop("reason_texts").with_columns(
        pl.lit(day).alias("partition_date"), pl.col("reason_codes").list.join(";")
    )
    decisions.write_parquet(scratch / "decisions.parquet")
    database = scratch / "decisions.duckdb"
    con = duckdb.connect(str(database))
    try:
        con.register("incoming", decisions.select(pl.exclude(pl.List(pl.String))).to_arrow())
        con.execute("CREATE OR REPLACE TABLE decisions AS SELECT * FROM incoming")
    finally:
        con.close()
    shown = [*dict.fromkeys([domain.case_id, *domain.review.context_columns])]
    review = routed.filter(pl.col("route") == "human_review").select(
        *shown, "review_queue", pl.col("reason_texts").list.join("; ")
    )
    review.write_csv(scratch / "review_cases.csv")
    return BaselineDay(files, flagged, case_features, routed, database)

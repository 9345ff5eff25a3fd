"""The ASOF JOIN offline store (`features.asof_store`) against Feast's own DuckDB join.

The point-in-time oracles in test_features.py and test_history.py run through this store
(it is the configured one); here the same requests also go through Feast's own `duckdb`
store on the same registry and files, and the answers must be identical, with short and
full feature names, with the fallback path, and materialisation must still work.
"""

from __future__ import annotations

import random
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from features.config import ASOF_OFFLINE_STORE, feature_source_dir, feature_store_config
from features.engineering import EVENT_TIMESTAMP, compute_features
from tests.unit.features.test_history import BASE, DOMAIN, KEY, START, WINDOW, land, random_cases

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*fetch_arrow_table:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory):
    """(ASOF store, Feast's own DuckDB store) over one registry and one set of partitions."""
    from feast import FeatureStore, RepoConfig

    from features.store import open_feature_store

    feast_dir = tmp_path_factory.mktemp("feast-asof")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*fetch_arrow_table", DeprecationWarning)
        asof = open_feature_store(DOMAIN, feast_dir)
    cases = random_cases(200, seed=21)
    land(cases, feast_dir)
    config = {**feature_store_config(DOMAIN, feast_dir), "offline_store": {"type": "duckdb"}}
    own = FeatureStore(repo_path=str(feast_dir), config=RepoConfig(repo_path=feast_dir, **config))
    return asof, own, cases


def requests(cases: pl.DataFrame) -> pd.DataFrame:
    """Each case at, just before, at TTL expiry and just after it, plus random times."""
    rng = random.Random(4)
    ttl = timedelta(days=DOMAIN.features.ttl_days)
    rows = []
    for case, key, at in cases.select(BASE.case_id, KEY, BASE.event_time).rows()[:60]:
        for when in (at, at - timedelta(microseconds=1), at + ttl, at + timedelta(days=WINDOW)):
            rows.append((case, key, when))
        rows.append((case, key, START + timedelta(minutes=rng.randrange(-1440, 60 * 24 * 200))))
    rows.append(("NO-SUCH-CASE", "NOBODY", START))
    frame = pd.DataFrame(rows, columns=[BASE.case_id, KEY, EVENT_TIMESTAMP])
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    return frame.assign(row=range(len(frame)))


def retrieve(store, entity_df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    service = store.get_feature_service(DOMAIN.features.service)
    out = store.get_historical_features(entity_df=entity_df.copy(), features=service, **kwargs)
    return out.to_df().sort_values("row").reset_index(drop=True)


def test_the_generated_configuration_selects_the_asof_store(stores) -> None:
    asof, own, _ = stores
    assert asof.config.offline_store.type == ASOF_OFFLINE_STORE
    assert type(asof._get_provider().offline_store).__name__ == "AsofDuckDBOfflineStore"
    assert type(own._get_provider().offline_store).__name__ == "DuckDBOfflineStore"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"full_feature_names": True}, {"filter_by_created_timestamp": True}],
    ids=["short-names", "full-names", "created-cutoff-fallback"],
)
def test_same_answers_as_feasts_own_join(stores, kwargs: dict) -> None:
    """Both views, ties, TTL edges, future rows, unknown keys: identical frames and types."""
    asof, own, cases = stores
    entity_df = requests(cases)
    got, expected = retrieve(asof, entity_df, **kwargs), retrieve(own, entity_df, **kwargs)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert list(got.columns) == list(expected.columns)
    features = [c for c in expected.columns if c not in entity_df.columns]
    if kwargs.get("filter_by_created_timestamp"):
        # Feast's own join answers (rows were created now, after every request: all null).
        assert got[features].isna().all().all()
        return
    # Not vacuous: some rows matched in both views, some matched nothing.
    assert got[features].notna().any().all() and got[features].isna().any().all()


def test_materialisation_still_works(stores) -> None:
    """Inherited `pull_latest_from_table_or_query` fills the online store from the files."""
    asof, _, cases = stores
    # The application view only: the history view has null applicant keys, which Feast's
    # online key encoding rejects whichever offline store read them.
    asof.materialize(START - timedelta(days=1), START + timedelta(days=120), [DOMAIN.features.view])
    case, amount = (
        cases.filter(pl.col("loan_amount").is_not_null()).select(BASE.case_id, "loan_amount").row(0)
    )
    online = asof.get_online_features(
        features=[f"{DOMAIN.features.view}:loan_amount"],
        entity_rows=[{BASE.case_id: case}],
    ).to_dict()
    assert online["loan_amount"] == [amount]
    assert Path(asof.config.online_store.path).exists()


def test_text_request_times_are_read_as_utc_as_feast_reads_them(stores) -> None:
    """Request times given as ISO text: parsed as UTC, same answers and metadata as Feast's."""
    asof, own, cases = stores
    entity_df = requests(cases)
    as_text = entity_df[EVENT_TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    text = entity_df.assign(**{EVENT_TIMESTAMP: as_text.astype(object)})
    service = asof.get_feature_service(DOMAIN.features.service)
    jobs = [
        store.get_historical_features(entity_df=text.copy(), features=service)
        for store in (asof, own)
    ]
    got, expected = (job.to_df().sort_values("row").reset_index(drop=True) for job in jobs)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert got[EVENT_TIMESTAMP].dt.tz is not None
    low, high = jobs[0].metadata.min_event_timestamp, jobs[0].metadata.max_event_timestamp
    assert (low, high) == (
        jobs[1].metadata.min_event_timestamp,
        jobs[1].metadata.max_event_timestamp,
    )
    assert low == entity_df[EVENT_TIMESTAMP].min().to_pydatetime()


def test_a_persisted_retrieval_is_the_one_feast_saves(stores, tmp_path: Path) -> None:
    """`persist` (saved datasets) writes what Feast's own job writes for the same request."""
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    asof, own, cases = stores
    entity_df = requests(cases)
    service = asof.get_feature_service(DOMAIN.features.service)
    for name, store in (("asof", asof), ("own", own)):
        job = store.get_historical_features(entity_df=entity_df.copy(), features=service)
        job.persist(SavedDatasetFileStorage(path=str(tmp_path / f"{name}.parquet")))
    got, expected = (
        pd.read_parquet(tmp_path / f"{name}.parquet").sort_values("row").reset_index(drop=True)
        for name in ("asof", "own")
    )
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == len(entity_df)


def parquet_scans(con, sql: str, params: list) -> list[dict]:
    """Each Parquet scan of `sql` run on `con`: its files and row groups scanned / to scan."""
    import json

    con.execute("PRAGMA enable_profiling = 'json'")
    (plan,) = con.sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params=params).fetchall()[0][1:]
    scans, nodes = [], [json.loads(plan)]
    while nodes:
        node = nodes.pop()
        nodes += node.get("children", []) + node.get("operator", [])
        if node.get("extra_info", {}).get("Function") == "READ_PARQUET":
            scans.append(node)
    return scans


def land_in_slices(cases: pl.DataFrame, feast_dir: Path, slice_rows: int) -> None:
    """Write one day's cases as the sliced `case_features` step does: the day's file staged
    slice by slice (a row group per slice, in case order), and the day's history ledger."""
    from features.history import write_history_partitions
    from features.store import FeaturePartitionWriter

    raw = pl.read_parquet(BASE.root / "data" / "sample" / "lendingclub_loans_2018q1.parquet")
    filler = raw.head(cases.height).drop("loan_amount", strict=False)
    full = pl.concat([filler, cases], how="horizontal").with_columns(
        pl.col(BASE.event_time).dt.date().alias("partition_date")
    )
    (day,) = full["partition_date"].unique().to_list()
    writer = FeaturePartitionWriter(DOMAIN, feast_dir, [day], staged=True)
    for part in full.iter_slices(slice_rows):
        writer.write(compute_features(part, DOMAIN), part["partition_date"])
    writer.commit()
    write_history_partitions(full, DOMAIN, feast_dir, [day])


def test_a_slice_reads_only_the_row_groups_of_its_keys(tmp_path: Path) -> None:
    """A day written in slices holds each slice's cases in its own row groups, in case
    order: a request for one slice's cases skips the day's other row groups, so a slice's
    retrieval costs what the slice needs, not what the day holds (it grew with the day at
    10M cases, BENCHMARKS.md). Same answers as Feast's own join.

    More than 50 keys are requested: DuckDB prunes by itself with an IN list of at most
    `dynamic_or_filter_threshold` (50) join keys, and scans every row group above that.
    """
    from feast import FeatureStore, RepoConfig

    from features.store import open_feature_store

    feast_dir = tmp_path / "feast"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*fetch_arrow_table", DeprecationWarning)
        asof = open_feature_store(DOMAIN, feast_dir)
    rows, slice_rows = 400, 80
    cases = random_cases(rows, seed=5).with_columns(  # one day, ids in time order
        pl.format("C{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(4)).alias(BASE.case_id),
        (pl.lit(START) + pl.duration(seconds=pl.int_range(pl.len()))).alias(BASE.event_time),
    )
    land_in_slices(cases, feast_dir, slice_rows)
    wanted = cases.slice(2 * slice_rows, slice_rows)  # the third slice's cases
    entity_df = wanted.select(BASE.case_id, KEY, pl.col(BASE.event_time).alias(EVENT_TIMESTAMP))
    entity_df = entity_df.to_pandas().assign(row=range(wanted.height))
    service = asof.get_feature_service(DOMAIN.features.service)
    job = asof.get_historical_features(entity_df=entity_df.copy(), features=service)
    con = job.session()
    try:
        scans = parquet_scans(con, job.to_sql(), job._params)
    finally:
        con.close()
    folder = str(feature_source_dir(DOMAIN, feast_dir))
    (scan,) = [s for s in scans if folder in s["extra_info"]["Filename(s)"]]
    assert scan["total_row_groups_to_scan"] == rows // slice_rows  # a row group per slice
    # The slice's key range is a constant filter of the scan, compared with each row group's
    # statistics before it is read (DuckDB's own dynamic filter is optional: it prunes only
    # row groups not yet started when the request's hash table is built, not at scale).
    low, high = wanted[BASE.case_id].min(), wanted[BASE.case_id].max()
    filters = scan["extra_info"].get("Filters", "")
    assert f"application_id >= '{low}'" in filters and f"application_id <= '{high}'" in filters
    assert scan["row_groups_scanned"] == 1
    # And the answers are Feast's own.
    config = {**feature_store_config(DOMAIN, feast_dir), "offline_store": {"type": "duckdb"}}
    own = FeatureStore(repo_path=str(feast_dir), config=RepoConfig(repo_path=feast_dir, **config))
    got, expected = retrieve(asof, entity_df), retrieve(own, entity_df)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert got["loan_amount"].notna().any()

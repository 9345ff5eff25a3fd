"""The Feast feature layer against a real store in a temporary folder (no mocks).

One store is opened per module because `import feast` alone costs seconds; every test writes
its own partition days and case ids, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.config import feature_source_dir, write_feature_store_yaml
from features.engineering import CREATED_TIMESTAMP, EVENT_TIMESTAMP, compute_features
from features.store import (
    historical_features,
    open_feature_store,
    registry_is_current,
    write_feature_partition,
)
from hitl_gate.core.domain import PROJECT_ROOT, DomainConfig, load_domain

SAMPLE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
DOMAIN = load_domain("consumer_credit")
CASE_ID = DOMAIN.case_id
NAMES = DOMAIN.features.names

# ibis 12 calls a DuckDB 2.0 method that DuckDB deprecates; harmless, and not ours to fix.
pytestmark = [
    pytest.mark.slow,  # a real Feast store: `make test` runs it, test-fast not
    pytest.mark.filterwarnings("ignore:.*fetch_arrow_table:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def applications() -> pl.DataFrame:
    """200 real applications, 40 minutes apart from 2018-01-01, so they span several days."""
    raw = pl.read_parquet(SAMPLE).head(200)
    return raw.with_columns(
        pl.format("LC18-{}", pl.col("rownames").cast(pl.String).str.zfill(5)).alias(CASE_ID),
        (
            pl.lit(datetime(2018, 1, 1, tzinfo=UTC)) + pl.duration(minutes=pl.col("rownames") * 40)
        ).alias(DOMAIN.event_time),
    )


@pytest.fixture(scope="module")
def features(applications: pl.DataFrame) -> pl.DataFrame:
    return compute_features(applications, DOMAIN)


@pytest.fixture(scope="module")
def feast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feast")


@pytest.fixture(scope="module")
def store(feast_dir: Path):
    with warnings.catch_warnings():
        import feast  # noqa: F401 - its import puts a "once" DeprecationWarning filter first

        warnings.filterwarnings("ignore", ".*fetch_arrow_table", DeprecationWarning)
        return open_feature_store(DOMAIN, feast_dir)


def write_by_day(frame: pl.DataFrame, feast_dir: Path) -> list[Path]:
    """Write one partition file per event day, as the daily pipeline does."""
    days = frame.with_columns(pl.col(EVENT_TIMESTAMP).dt.date().alias("day"))
    return [
        write_feature_partition(part, DOMAIN, feast_dir, key[0])
        for key, part in days.group_by("day", maintain_order=True)
    ]


def feature_rows(case_id: str, at: datetime, value: float) -> pl.DataFrame:
    """One hand-made feature row whose every feature equals `value`."""
    return pl.DataFrame(
        {
            CASE_ID: [case_id],
            EVENT_TIMESTAMP: [at],
            CREATED_TIMESTAMP: [at],
            **{name: [value] for name in NAMES},
        }
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def entities(rows: list[tuple[str, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {CASE_ID: [r[0] for r in rows], EVENT_TIMESTAMP: [r[1] for r in rows]},
        schema={CASE_ID: pl.String, EVENT_TIMESTAMP: pl.Datetime("us", "UTC")},
    )


def test_compute_features_has_the_declared_columns_and_types(features: pl.DataFrame) -> None:
    assert features.columns == [CASE_ID, EVENT_TIMESTAMP, CREATED_TIMESTAMP, *NAMES]
    assert features.height == 200
    assert features.schema[EVENT_TIMESTAMP] == pl.Datetime("us", "UTC")
    assert features.schema[CREATED_TIMESTAMP] == pl.Datetime("us", "UTC")
    assert all(features.schema[name] == pl.Float64 for name in NAMES)
    assert features[CASE_ID][0] == "LC18-00001"


def test_derived_features_follow_the_declared_sql(
    applications: pl.DataFrame, features: pl.DataFrame
) -> None:
    expected = applications.select(
        # The declaration maps a zero income to null (one such row is in the sample).
        pl.when(pl.col("annual_income") > 0)
        .then(pl.col("loan_amount") / pl.col("annual_income"))
        .alias("loan_to_income"),
        (2018 - pl.col("earliest_credit_line")).cast(pl.Float64).alias("credit_history_years"),
        pl.col("term").cast(pl.Float64),
    )
    assert features.select(expected.columns).equals(expected)


def test_zero_denominator_gives_null_not_infinity(applications: pl.DataFrame) -> None:
    rows = applications.head(2).with_columns(annual_income=pl.Series([0.0, 50_000.0]))
    out = compute_features(rows, DOMAIN)
    assert out["loan_to_income"][0] is None
    assert out["loan_to_income"][1] == rows["loan_amount"][1] / 50_000.0


def test_naive_event_time_is_taken_as_utc(applications: pl.DataFrame) -> None:
    naive = applications.head(1).with_columns(pl.col(DOMAIN.event_time).dt.replace_time_zone(None))
    out = compute_features(naive, DOMAIN)
    assert out[EVENT_TIMESTAMP][0] == applications[DOMAIN.event_time][0]


def test_unknown_column_in_a_derived_feature_is_named(applications: pl.DataFrame) -> None:
    bad_features = DOMAIN.features.model_copy(update={"derived": {"ratio": "nope / loan_amount"}})
    bad: DomainConfig = DOMAIN.model_copy(update={"features": bad_features})
    with pytest.raises(ValueError, match=r"'ratio'.*\['nope'\]"):
        compute_features(applications, bad)


def test_retrieval_returns_exactly_the_values_written(
    store, feast_dir: Path, features: pl.DataFrame
) -> None:
    paths = write_by_day(features, feast_dir)
    assert len(paths) >= 2, "the sample must span several partition files"
    # Shuffled, with a duplicate row and an extra column: order and columns must survive.
    requested = (
        features.select(CASE_ID, EVENT_TIMESTAMP)
        .sample(fraction=1.0, shuffle=True, seed=7)
        .vstack(features.select(CASE_ID, EVENT_TIMESTAMP).head(1))
        .with_columns(pl.lit("keep me").alias("note"))
    )
    out = historical_features(store, DOMAIN, requested)
    expected = (
        requested.with_row_index("i")
        .join(features.drop(CREATED_TIMESTAMP), on=[CASE_ID, EVENT_TIMESTAMP], how="left")
        .sort("i")
        .drop("i")
    )
    assert out.columns == [*requested.columns, *NAMES]
    assert out.equals(expected)


def test_point_in_time_ttl_and_unknown_cases(store, feast_dir: Path) -> None:
    t1, t2 = at("2018-06-01T12:00"), at("2018-06-10T12:00")
    write_feature_partition(feature_rows("PIT-1", t1, 1.0), DOMAIN, feast_dir, t1.date())
    write_feature_partition(feature_rows("PIT-1", t2, 2.0), DOMAIN, feast_dir, t2.date())
    ttl = timedelta(days=DOMAIN.features.ttl_days)
    cases = [  # (case, as of, expected value of every feature)
        ("PIT-1", t1 - timedelta(seconds=1), None),  # before the first version
        ("PIT-1", t1, 1.0),  # event time is inclusive
        ("PIT-1", t1 + timedelta(days=5), 1.0),  # between versions: never the later one
        ("PIT-1", t2 + timedelta(hours=1), 2.0),
        ("PIT-1", t2 + ttl - timedelta(hours=1), 2.0),  # still inside the TTL
        ("PIT-1", t2 + ttl + timedelta(hours=1), None),  # beyond the TTL
        ("NEVER-SEEN", t2, None),
    ]
    out = historical_features(store, DOMAIN, entities([(c, ts) for c, ts, _ in cases]))
    assert out.height == len(cases)
    for (case, ts, value), row in zip(cases, out.iter_rows(named=True), strict=True):
        assert (row[CASE_ID], row[EVENT_TIMESTAMP]) == (case, ts)
        assert {row[name] for name in NAMES} == {value}, (case, ts)


def test_rewriting_a_partition_replaces_its_rows(store, feast_dir: Path) -> None:
    ts = at("2018-09-01T08:00")
    write_feature_partition(feature_rows("REWRITE-1", ts, 1.0), DOMAIN, feast_dir, ts.date())
    path = write_feature_partition(feature_rows("REWRITE-1", ts, 3.0), DOMAIN, feast_dir, ts.date())
    out = historical_features(store, DOMAIN, entities([("REWRITE-1", ts)]))
    assert out["loan_amount"].to_list() == [3.0]
    assert pl.read_parquet(path).height == 1
    assert not list(path.parent.glob("*.tmp")), "no temporary file may be left behind"


def test_new_partitions_need_no_reapply(store, feast_dir: Path) -> None:
    from features.definitions import feature_objects

    view_before = store.get_feature_view(DOMAIN.features.view)
    ts = at("2018-10-01T08:00")
    write_feature_partition(feature_rows("NEW-DAY-1", ts, 5.0), DOMAIN, feast_dir, ts.date())
    objects = feature_objects(DOMAIN, feature_source_dir(DOMAIN, feast_dir))
    assert registry_is_current(store, objects)
    longer_ttl = DOMAIN.features.model_copy(update={"ttl_days": 90})
    changed = DOMAIN.model_copy(update={"features": longer_ttl})
    assert not registry_is_current(
        store, feature_objects(changed, feature_source_dir(changed, feast_dir))
    )
    reopened = open_feature_store(DOMAIN, feast_dir)
    view_after = reopened.get_feature_view(DOMAIN.features.view)
    assert view_after.last_updated_timestamp == view_before.last_updated_timestamp
    out = historical_features(reopened, DOMAIN, entities([("NEW-DAY-1", ts)]))
    assert out["loan_amount"].to_list() == [5.0]


def test_empty_request_gives_an_empty_frame_with_feature_columns(store) -> None:
    out = historical_features(store, DOMAIN, entities([]))
    assert out.columns == [CASE_ID, EVENT_TIMESTAMP, *NAMES]
    assert out.height == 0


def test_store_reopens_from_its_yaml_in_another_directory(
    store, feast_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh store configured only by the written YAML, from another working directory.

    A new FeatureStore reads the SQLite registry from disk, so this proves what a new process
    needs (absolute paths, complete config) without paying the Feast import a second time.
    """
    from feast import FeatureStore

    ts = at("2018-11-01T08:00")
    write_feature_partition(feature_rows("REOPEN-1", ts, 7.0), DOMAIN, feast_dir, ts.date())
    write_feature_store_yaml(DOMAIN, feast_dir)
    monkeypatch.chdir(tmp_path)
    reopened = FeatureStore(repo_path=str(feast_dir))
    assert reopened.get_feature_service(DOMAIN.features.service).name == DOMAIN.features.service
    out = historical_features(reopened, DOMAIN, entities([("REOPEN-1", ts)]))
    assert out.select(NAMES).row(0) == (7.0,) * len(NAMES)


def test_written_yaml_matches_the_programmatic_config(feast_dir: Path) -> None:
    import yaml

    from features.config import feature_store_config

    path = write_feature_store_yaml(DOMAIN, feast_dir)
    assert yaml.safe_load(path.read_text()) == feature_store_config(DOMAIN, feast_dir)
    assert Path(feature_store_config(DOMAIN, feast_dir)["online_store"]["path"]).is_absolute()


def test_two_partition_files_are_both_visible(store, feast_dir: Path) -> None:
    day_a, day_b = at("2018-12-01T08:00"), at("2018-12-02T08:00")
    first = write_feature_partition(
        feature_rows("DAY-A", day_a, 1.0), DOMAIN, feast_dir, date(2018, 12, 1)
    )
    second = write_feature_partition(
        feature_rows("DAY-B", day_b, 2.0), DOMAIN, feast_dir, date(2018, 12, 2)
    )
    assert (first.name, second.name) == ("2018-12-01.parquet", "2018-12-02.parquet")
    assert first.parent == second.parent == feature_source_dir(DOMAIN, feast_dir)
    out = historical_features(store, DOMAIN, entities([("DAY-A", day_b), ("DAY-B", day_b)]))
    assert out["loan_amount"].to_list() == [1.0, 2.0]


def _oracle(rows: list[tuple[str, datetime, datetime, float]], key: str, asof: datetime, ttl):
    """Brute force: newest (event, created) row of `key` with asof - ttl <= event <= asof."""
    eligible = [r for r in rows if r[0] == key and r[1] <= asof and r[1] + ttl >= asof]
    return max(eligible, key=lambda r: (r[1], r[2]))[3] if eligible else None


def test_point_in_time_matches_a_brute_force_oracle(store, feast_dir: Path) -> None:
    """Random feature histories with ties, TTL boundaries and future rows, against an oracle."""
    import random

    rng = random.Random(11)
    ttl = timedelta(days=DOMAIN.features.ttl_days)
    start = at("2020-02-01T00:00")
    keys = [f"ORACLE-{i}" for i in range(12)]
    rows: list[tuple[str, datetime, datetime, float]] = []
    for key in keys:
        for _ in range(rng.randint(1, 6)):
            event = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 90, 30))
            rows.append((key, event, event, rng.random()))
        # A tie on event time: the later created_timestamp must win.
        tied = rows[-1]
        rows.append((key, tied[1], tied[2] + timedelta(seconds=5), rng.random()))
    requests = []
    for key in [*keys, "ORACLE-NONE"]:
        own = [r for r in rows if r[0] == key]
        for _ in range(8):
            requests.append(
                (key, start + timedelta(minutes=rng.randrange(-60 * 24, 60 * 24 * 130)))
            )
        for _, event, _, _ in own[:3]:
            requests += [
                (key, event),  # exactly at the row: inclusive
                (key, event - timedelta(microseconds=1)),  # just before: the row is future
                (key, event + ttl),  # exactly at TTL expiry: still valid
                (key, event + ttl + timedelta(microseconds=1)),  # just after expiry
            ]
    frame = pl.DataFrame(
        {
            CASE_ID: [r[0] for r in rows],
            EVENT_TIMESTAMP: [r[1] for r in rows],
            CREATED_TIMESTAMP: [r[2] for r in rows],
            **{name: [r[3] for r in rows] for name in NAMES},
        },
        schema_overrides={
            EVENT_TIMESTAMP: pl.Datetime("us", "UTC"),
            CREATED_TIMESTAMP: pl.Datetime("us", "UTC"),
        },
    )
    write_by_day(frame, feast_dir)
    out = historical_features(store, DOMAIN, entities(requests))
    expected = [_oracle(rows, key, asof, ttl) for key, asof in requests]
    got = out["loan_amount"].to_list()
    assert out.select(CASE_ID, EVENT_TIMESTAMP).rows() == requests
    mismatches = [(r, e, g) for r, e, g in zip(requests, expected, got, strict=True) if e != g]
    assert not mismatches, mismatches[:5]
    # The oracle exercised every branch: hits, misses, future rows and expiries.
    assert sum(e is None for e in expected) >= 20 and sum(e is not None for e in expected) >= 40


def test_one_feature_service_per_model_version(store, feast_dir: Path) -> None:
    """Each model version gets `<model>_v<N>`: described, owned, tagged, applied once."""
    import dataclasses
    import runpy

    from features.services import (
        ModelVersionRef,
        ensure_model_service,
        foreign_services,
        read_manifest,
    )

    ref = ModelVersionRef(
        model_name="consumer_credit_pd",
        version="7",
        family="logistic_scorecard",
        run_id="run-7",
        inputs=("interest_rate", "emp_length"),
    )
    assert ensure_model_service(store, DOMAIN, ref) == "consumer_credit_pd_v7"
    service = store.get_feature_service("consumer_credit_pd_v7")
    assert "version 7" in service.description and service.owner == DOMAIN.features.owner
    assert service.tags["model_version"] == "7"
    assert service.tags["mlflow_run_id"] == "run-7"
    assert service.tags["model_inputs"] == "interest_rate,emp_length"
    assert [p.name for p in service.feature_view_projections] == [DOMAIN.features.view]
    applied_at = service.last_updated_timestamp
    ensure_model_service(store, DOMAIN, ref)  # idempotent: nothing re-applied
    assert store.get_feature_service(ref.service_name).last_updated_timestamp == applied_at
    assert ref in read_manifest(feast_dir, DOMAIN)

    ts = at("2019-01-05T08:00")
    write_feature_partition(feature_rows("SERVICE-1", ts, 4.0), DOMAIN, feast_dir, ts.date())
    request = entities([("SERVICE-1", ts)])
    via_version = historical_features(store, DOMAIN, request, ref.service_name)
    assert via_version.equals(historical_features(store, DOMAIN, request))

    # The feast CLI's generated repo module rebuilds the same services from the manifest.
    write_feature_store_yaml(DOMAIN, feast_dir)
    module = runpy.run_path(str(feast_dir / "feature_repo.py"))
    names = {getattr(o, "name", None) for k, o in module.items() if k.startswith("feast_object_")}
    assert {"consumer_credit_pd_v7", DOMAIN.features.service, DOMAIN.features.view} <= names

    with pytest.raises(ValueError, match="no_such_feature"):
        unknown = dataclasses.replace(ref, version="8", inputs=("no_such_feature",))
        ensure_model_service(store, DOMAIN, unknown)
    used = [DOMAIN.features.service, "consumer_credit_pd_v7"]
    assert foreign_services(used, DOMAIN, "consumer_credit_pd", "7") == []
    assert foreign_services(used, DOMAIN, "consumer_credit_pd", "8") == ["consumer_credit_pd_v7"]

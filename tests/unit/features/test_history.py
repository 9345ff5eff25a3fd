"""Applicant-history features: declaration, brute-force oracles and a real Feast round trip.

The shipped domains have no applicant key, so the tests declare one on a copy of
`consumer_credit` (an `applicant_id` contract column, as `bench/generate.py` produces).
"""

from __future__ import annotations

import random
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.engineering import CREATED_TIMESTAMP, EVENT_TIMESTAMP, compute_features
from features.history import (
    SOURCE_AMOUNT,
    SOURCE_CASE,
    compute_history,
    history_source_dir,
    ledger,
    write_history_partitions,
)
from hitl_gate.core.domain import DomainConfig, load_domain

pytestmark = [
    pytest.mark.slow,  # a real Feast store: `make test` runs it, test-fast not
    pytest.mark.filterwarnings("ignore:.*fetch_arrow_table:DeprecationWarning"),
]

BASE = load_domain("consumer_credit")
KEY = "applicant_id"
WINDOW = 30


def history_domain(window_days: int = WINDOW) -> DomainConfig:
    """consumer_credit plus an applicant key column and a declared history view (validated)."""
    raw = BASE.model_dump()
    raw["contract"]["columns"][KEY] = {"type": "str", "description": "Stable applicant id."}
    raw["features"]["applicant_history"] = {
        "key": KEY,
        "view": "credit_applicant_history",
        "amount": "loan_amount",
        "window_days": window_days,
    }
    return DomainConfig.model_validate({**raw, "source_dir": BASE.source_dir})


DOMAIN = history_domain()
COUNT, AMOUNT, DAYS = DOMAIN.features.applicant_history.names
START = datetime(2021, 3, 1, tzinfo=UTC)


def test_declaration_names_the_history_features_and_checks_its_columns() -> None:
    assert DOMAIN.features.names[-3:] == [
        "prior_applications_30d",
        "prior_amount_30d",
        "days_since_prior_application",
    ]
    assert BASE.features.applicant_history is None
    assert BASE.features.names == BASE.features.application_names
    raw = DOMAIN.model_dump()
    raw["features"]["applicant_history"]["key"] = "no_such_column"
    with pytest.raises(ValueError, match="no_such_column"):
        DomainConfig.model_validate(raw)


def random_cases(n: int, seed: int) -> pl.DataFrame:
    """`n` cases of 8 applicants (one key always null) with ties and window-edge gaps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        applicant = rng.choice([f"A{k}" for k in range(7)] + [None])
        if rows and rng.random() < 0.15:  # a tie: same applicant, same instant
            applicant, at = rows[-1][1], rows[-1][2]
        elif rows and rng.random() < 0.1:  # exactly one window after an earlier case
            applicant, at = rows[-1][1], rows[-1][2] + timedelta(days=WINDOW)
        else:
            at = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
        amount = None if rng.random() < 0.05 else float(rng.randrange(1000, 40000))
        rows.append((f"C{i:04d}", applicant, at, amount))
    return pl.DataFrame(
        rows,
        schema={
            BASE.case_id: pl.String,
            KEY: pl.String,
            BASE.event_time: pl.Datetime("us", "UTC"),
            "loan_amount": pl.Float64,
        },
        orient="row",
    )


def brute_force(cases: pl.DataFrame) -> dict[str, tuple]:
    """Per case: (count, amount sum, days since latest) over strictly earlier in-window cases."""
    rows = cases.rows(named=True)
    window = timedelta(days=WINDOW)
    out = {}
    for row in rows:
        if row[KEY] is None:
            out[row[BASE.case_id]] = (None, None, None)
            continue
        t = row[BASE.event_time]
        prior = [r for r in rows if r[KEY] == row[KEY] and t - window <= r[BASE.event_time] < t]
        amounts = [r["loan_amount"] for r in prior if r["loan_amount"] is not None]
        gap = min(((t - r[BASE.event_time]) / timedelta(days=1) for r in prior), default=None)
        out[row[BASE.case_id]] = (float(len(prior)), float(sum(amounts)), gap)
    return out


def as_dict(rows: pl.DataFrame, case_column: str) -> dict[str, tuple]:
    return {r[0]: tuple(r[1:]) for r in rows.select(case_column, COUNT, AMOUNT, DAYS).rows()}


def approx_equal(got: dict[str, tuple], expected: dict[str, tuple]) -> None:
    assert got.keys() == expected.keys()
    for case, values in expected.items():
        for g, e in zip(got[case], values, strict=True):
            assert (g is None and e is None) or g == pytest.approx(e, abs=1e-9), (case, got[case])


def test_history_matches_the_brute_force_oracle_split_across_runs() -> None:
    """Ties, window edges, null keys; the earlier half arrives as stored ledger rows."""
    cases = random_cases(300, seed=5)
    expected = brute_force(cases)
    whole = compute_history(ledger(cases, DOMAIN), ledger(cases.clear(), DOMAIN), DOMAIN)
    approx_equal(as_dict(whole, SOURCE_CASE), expected)
    cut = START + timedelta(days=45)
    early = cases.filter(pl.col(BASE.event_time) < cut)
    late = cases.filter(pl.col(BASE.event_time) >= cut)
    # The stored earlier ledger includes a stale copy of a late case id: the current run wins.
    stale = ledger(late.head(1), DOMAIN).with_columns(pl.lit(1e9).alias(SOURCE_AMOUNT))
    earlier = pl.concat([ledger(early, DOMAIN), stale])
    split = compute_history(ledger(late, DOMAIN), earlier, DOMAIN)
    approx_equal(as_dict(split, SOURCE_CASE), {c: expected[c] for c in late[BASE.case_id]})


LANDED = "landed"  # a store holding the cases the first test below lands (random_cases(160, 9))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """An empty store; parametrized with `LANDED` (indirect), one of its own with the cases the
    serving test lands already landed, so that a test reading them does not depend on running
    after that test."""
    from features.store import open_feature_store

    feast_dir = tmp_path_factory.mktemp("feast-history")
    with warnings.catch_warnings():
        import feast  # noqa: F401

        warnings.filterwarnings("ignore", ".*fetch_arrow_table", DeprecationWarning)
        feature_store = open_feature_store(DOMAIN, feast_dir)
    if getattr(request, "param", None) == LANDED:
        land(random_cases(160, seed=9), feast_dir)
    return feature_store


def land(cases: pl.DataFrame, feast_dir: Path) -> None:
    """Write application and history partitions one day per run, as the pipeline does."""
    from features.store import write_feature_partition

    raw = pl.read_parquet(BASE.root / "data" / "sample" / "lendingclub_loans_2018q1.parquet")
    filler = raw.head(cases.height).drop("loan_amount", strict=False)
    full = pl.concat([filler, cases], how="horizontal").with_columns(
        pl.col(BASE.event_time).dt.date().alias("partition_date")
    )
    for (day,), part in full.sort(BASE.event_time).group_by("partition_date", maintain_order=True):
        features = compute_features(part, DOMAIN)
        write_feature_partition(features, DOMAIN, feast_dir, day)
        write_history_partitions(part, DOMAIN, feast_dir, [day])


def test_feast_serves_each_case_its_history_as_of_its_decision_time(store) -> None:
    from features.store import historical_features, stored_entities

    feast_dir = Path(store.repo_path)
    cases = random_cases(160, seed=9)
    land(cases, feast_dir)
    entities = cases.select(BASE.case_id, KEY, pl.col(BASE.event_time).alias(EVENT_TIMESTAMP))
    served = historical_features(store, DOMAIN, entities)
    approx_equal(as_dict(served, BASE.case_id), brute_force(cases))
    stored = stored_entities(DOMAIN, feast_dir).sort(BASE.case_id)
    assert stored.select(BASE.case_id, KEY).equals(
        entities.select(BASE.case_id, KEY).sort(BASE.case_id)
    )


@pytest.mark.parametrize("store", [LANDED], indirect=True)
def test_history_view_matches_the_as_of_oracle_at_any_time(store) -> None:
    """Requests at arbitrary times: newest (event, created) row within the TTL, never later."""
    from features.store import historical_features

    feast_dir = Path(store.repo_path)
    files = sorted(history_source_dir(DOMAIN, feast_dir).glob("*.parquet"))
    rows = pl.read_parquet(files).select(KEY, EVENT_TIMESTAMP, CREATED_TIMESTAMP, COUNT).rows()
    ttl = timedelta(days=WINDOW)
    rng = random.Random(3)
    requests = []
    for key, event, _, _ in rows[:40]:
        if key is None:
            continue
        requests += [
            (key, event),
            (key, event - timedelta(microseconds=1)),
            (key, event + ttl),
            (key, event + ttl + timedelta(microseconds=1)),
            (key, START + timedelta(minutes=rng.randrange(-1440, 60 * 24 * 130))),
        ]
    requests.append(("NOBODY", START))
    entities = pl.DataFrame(
        {
            BASE.case_id: [f"REQ-{i}" for i in range(len(requests))],
            KEY: [r[0] for r in requests],
            EVENT_TIMESTAMP: [r[1] for r in requests],
        },
        schema={BASE.case_id: pl.String, KEY: pl.String, EVENT_TIMESTAMP: pl.Datetime("us", "UTC")},
    )
    served = historical_features(store, DOMAIN, entities)[COUNT].to_list()
    for (key, asof), got in zip(requests, served, strict=True):
        eligible = [r for r in rows if r[0] == key and asof - ttl <= r[1] <= asof]
        expected = max(eligible, key=lambda r: (r[1], r[2]))[3] if eligible else None
        assert got == expected, (key, asof)


def test_generator_adds_an_applicant_key_only_when_declared() -> None:
    from bench.generate import synthesise

    day = date(2021, 3, 1)
    with_key = synthesise(DOMAIN, 2000, day, seed=1)
    assert with_key[KEY].null_count() == 0
    assert with_key[KEY].n_unique() < with_key.height, "some applicants apply more than once"
    again = synthesise(DOMAIN, 2000, day + timedelta(days=1), seed=1)
    assert set(with_key[KEY]) & set(again[KEY]), "applicants return on other days"
    assert KEY not in synthesise(BASE, 10, day, seed=1).columns

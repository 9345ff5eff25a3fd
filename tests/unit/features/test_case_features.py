"""The case_features stage's rules: which columns it reads, the Feast files it writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from features.case_features import (
    NullCounts,
    entity_columns,
    feature_inputs,
    retrieval_entities,
    write_feature_sources,
)
from features.store import partition_path
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest.landing import discover_landing_files, ingest_files
from tests.unit.core.held_slices import HeldSlices
from tests.unit.ingest.test_day_batch import DAY, applications, land

CREATED = datetime(2018, 1, 3, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory, domain: DomainConfig) -> pl.DataFrame:
    """Six real applications as the validated stage stores them (contract-typed)."""
    landing = tmp_path_factory.mktemp("landing")
    land(landing, "apps.csv", applications(domain, 6))
    files = discover_landing_files(landing, domain.landing_subdir, DAY)
    return ingest_files(files, domain.contract, domain.case_id).accepted


def test_inputs_are_ids_times_passthrough_and_derived_roots(domain: DomainConfig) -> None:
    names = feature_inputs(domain)
    assert names[:3] == [domain.case_id, "partition_date", domain.event_time]
    assert len(names) == len(set(names))
    assert set(domain.features.passthrough) <= set(names)
    for sql in domain.features.derived.values():
        assert set(pl.sql_expr(sql).meta.root_names()) <= set(names)


def test_entities_carry_the_decision_instant_in_utc(
    domain: DomainConfig, validated: pl.DataFrame
) -> None:
    cases = validated.select(entity_columns(domain))
    entities = retrieval_entities(cases, domain)
    assert entities.columns == [domain.case_id, "partition_date", "event_timestamp"]
    assert entities.schema["event_timestamp"].time_zone == "UTC"
    naive = cases[domain.event_time].to_list()
    assert [t.replace(tzinfo=None) for t in entities["event_timestamp"]] == naive


def test_a_one_slice_day_is_written_whole_and_returned(
    tmp_path: Path, domain: DomainConfig, validated: pl.DataFrame
) -> None:
    cases = validated.select(feature_inputs(domain))
    whole = write_feature_sources(domain, tmp_path, [DAY], [cases], sliced=False, created=CREATED)
    assert whole is not None and whole.equals(cases)
    stored = pl.read_parquet(partition_path(domain, tmp_path, DAY))
    assert stored[domain.case_id].to_list() == cases[domain.case_id].cast(pl.String).to_list()
    assert set(domain.model.features) <= set(stored.columns)


def test_slices_append_to_one_file_per_day(
    tmp_path: Path, domain: DomainConfig, validated: pl.DataFrame
) -> None:
    cases = validated.select(feature_inputs(domain))
    slices = [cases.slice(0, 4), cases.slice(4, 2)]
    whole = write_feature_sources(domain, tmp_path, [DAY], slices, sliced=True, created=CREATED)
    assert whole is None  # a sliced day is retrieved slice by slice again
    assert pl.read_parquet(partition_path(domain, tmp_path, DAY)).height == 6


def test_a_failing_slice_leaves_no_partial_file(
    tmp_path: Path, domain: DomainConfig, validated: pl.DataFrame
) -> None:
    cases = validated.select(feature_inputs(domain))

    def slices() -> Iterator[pl.DataFrame]:
        yield cases.slice(0, 3)
        raise RuntimeError("the scan broke")

    with pytest.raises(RuntimeError, match="the scan broke"):
        write_feature_sources(domain, tmp_path, [DAY], slices(), sliced=True, created=CREATED)
    assert not partition_path(domain, tmp_path, DAY).exists()
    assert list(tmp_path.rglob("*.tmp")) == []


def test_null_counts_add_up_over_slices() -> None:
    counts = NullCounts(["a", "b"])
    counts.add(pl.DataFrame({"a": [1.0, None], "b": [None, None]}))
    counts.add(pl.DataFrame({"a": [None], "b": [2.0]}))
    assert counts.frame().rows() == [("a", 2), ("b", 2)]


def test_null_counts_list_every_feature_even_without_rows() -> None:
    assert NullCounts(["a"]).frame().rows() == [("a", 0)]


def test_days_of_a_backfill_get_one_file_each(
    tmp_path: Path, domain: DomainConfig, validated: pl.DataFrame
) -> None:
    later = date(2018, 1, 4)
    cases = validated.select(feature_inputs(domain))
    two_days = cases.with_columns(partition_date=pl.Series([DAY, later] * 3, dtype=pl.Date))
    write_feature_sources(domain, tmp_path, [DAY, later], [two_days], sliced=False, created=CREATED)
    assert pl.read_parquet(partition_path(domain, tmp_path, DAY)).height == 3
    assert pl.read_parquet(partition_path(domain, tmp_path, later)).height == 3


def test_a_slice_is_released_before_the_next_is_read(
    tmp_path: Path, domain: DomainConfig, validated: pl.DataFrame
) -> None:
    """Pass 1 holds one slice of inputs at a time: the previous slice (and its features) are
    gone when the next is read."""
    slices = HeldSlices(validated.select(feature_inputs(domain)), 2)
    write_feature_sources(domain, tmp_path, [DAY], iter(slices), sliced=True, created=CREATED)
    assert slices.count == 3
    assert pl.read_parquet(partition_path(domain, tmp_path, DAY)).height == 6

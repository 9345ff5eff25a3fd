"""The ingest stage's accounting: registered files as a frame, and a day's batch recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.domain import PROJECT_ROOT, DomainConfig, load_domain
from hitl_gate.ingest.day_batch import (
    RAW_CASES_SCHEMA,
    new_files,
    read_new_files,
    record_day_batch,
    registered_files_frame,
    repeated_files,
)
from hitl_gate.ingest.landing import discover_landing_files
from hitl_gate.ingest.landing_registry import RegisteredFile, register_files

SAMPLE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
DAY = date(2018, 1, 3)
NOW = datetime(2018, 1, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def applications(domain: DomainConfig, rows: int, first: int = 0) -> pl.DataFrame:
    """`rows` real applications as contract text, with ids from `first` on."""
    raw = pl.read_parquet(SAMPLE).slice(first, rows)
    shaped = raw.with_columns(
        application_id=pl.format("LC18-{}", pl.col("rownames").cast(pl.String).str.zfill(6)),
        application_time=(
            pl.datetime(2018, 1, 3, 8) + pl.duration(minutes=pl.col("rownames"))
        ).dt.to_string("%Y-%m-%dT%H:%M:%S"),
    )
    return shaped.select(pl.col(c).cast(pl.String) for c in domain.contract.columns)


def land(landing: Path, name: str, frame: pl.DataFrame, day: date = DAY) -> None:
    folder = landing / "applications" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_csv(folder / name)


def registered(con, domain: DomainConfig, landing: Path, day: date = DAY) -> pl.DataFrame:
    files = discover_landing_files(landing, domain.landing_subdir, day)
    return registered_files_frame(register_files(con, domain.name, files, "run-1", NOW))


def test_registered_files_frame_is_typed_even_when_empty() -> None:
    assert registered_files_frame([]).schema == pl.Schema(RAW_CASES_SCHEMA)


def test_new_and_repeated_files_split_on_duplicate_of(tmp_path: Path, domain: DomainConfig) -> None:
    land(tmp_path, "a.csv", applications(domain, 3))
    files = discover_landing_files(tmp_path, domain.landing_subdir, DAY)
    frame = registered_files_frame(
        [RegisteredFile(files[0], 1), RegisteredFile(files[0], 1, duplicate_of="earlier.csv")]
    )
    assert [f.path.name for f in new_files(frame)] == ["a.csv"]
    assert [(f.path.name, orig) for f, orig in repeated_files(frame)] == [("a.csv", "earlier.csv")]


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_day_batch_accounts_for_every_row_and_file(tmp_path: Path, domain: DomainConfig) -> None:
    good = applications(domain, 5)
    bad = applications(domain, 2, first=5).with_columns(loan_amount=pl.lit("lots"))
    land(tmp_path, "apps.csv", pl.concat([good, bad]))
    with audit_connection(tmp_path / "audit.duckdb") as con:
        raw = registered(con, domain, tmp_path)
        batch = record_day_batch(con, domain, read_new_files(raw, domain), raw, [DAY], "run-1", NOW)
        stored_files = query_frame(con, "SELECT status, rows_read FROM input_files")
        stored_quarantine = query_frame(con, "SELECT DISTINCT column_name FROM quarantine")
    assert (batch.rows_read, batch.accepted.height, batch.rows_quarantined) == (7, 5, 2)
    assert batch.files_rejected == 0 and batch.duplicate_files == 0
    assert batch.accepted["_contract_version"].unique().to_list() == [domain.contract.version]
    assert batch.accepted["_contract_digest"].unique().to_list() == [batch.contract_digest]
    assert stored_files["rows_read"].to_list() == [7]
    assert stored_files["status"].to_list() == [batch.files["status"].item()]
    assert stored_quarantine["column_name"].to_list() == ["loan_amount"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_case_accepted_on_another_day_is_quarantined_here(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The same case id landing on a later day is withheld: a case is decided once."""
    later = date(2018, 1, 4)
    land(tmp_path, "first.csv", applications(domain, 3))
    land(tmp_path, "again.csv", applications(domain, 4), day=later)
    with audit_connection(tmp_path / "audit.duckdb") as con:
        first = registered(con, domain, tmp_path)
        record_day_batch(con, domain, read_new_files(first, domain), first, [DAY], "run-1", NOW)
        again = registered(con, domain, tmp_path, later)
        batch = record_day_batch(
            con, domain, read_new_files(again, domain), again, [later], "run-2", NOW
        )
    assert batch.cases_held_elsewhere == 3
    assert (batch.accepted.height, batch.rows_quarantined, batch.rows_read) == (1, 3, 4)


@pytest.mark.usefixtures("fresh_audit_db")
def test_the_same_bytes_twice_are_one_file_and_a_duplicate_row(
    tmp_path: Path, domain: DomainConfig
) -> None:
    frame = applications(domain, 3)
    land(tmp_path, "a.csv", frame)
    land(tmp_path, "copy.csv", frame)
    with audit_connection(tmp_path / "audit.duckdb") as con:
        raw = registered(con, domain, tmp_path)
        batch = record_day_batch(con, domain, read_new_files(raw, domain), raw, [DAY], "r", NOW)
        statuses = query_frame(con, "SELECT status FROM input_files ORDER BY status")
    assert batch.duplicate_files == 1 and batch.accepted.height == 3
    assert statuses["status"].to_list() == ["accepted", "duplicate"]


@pytest.mark.usefixtures("fresh_audit_db")
def test_rerunning_a_day_replaces_its_accounting(tmp_path: Path, domain: DomainConfig) -> None:
    land(tmp_path, "a.csv", applications(domain, 3))
    with audit_connection(tmp_path / "audit.duckdb") as con:
        for run in ("run-1", "run-2"):
            raw = registered(con, domain, tmp_path)
            batch = record_day_batch(con, domain, read_new_files(raw, domain), raw, [DAY], run, NOW)
        files = query_frame(con, "SELECT run_id FROM input_files")
    assert batch.accepted.height == 3 and batch.cases_held_elsewhere == 0
    assert files["run_id"].to_list() == ["run-2"]

"""A day validated in slices equals the same day validated whole: output, quarantine, accounting.

Two files, 50 rows: bad values, a case id repeated within a file across slices and across
files, a time in the future, and a case another partition already accepted. Validated once
whole (one frame, as a day of at most `slice_rows` cases is) and once in slices of 7 rows, the
accepted rows spilled to a scratch file and written to the day's file slice by slice.
Compared: the step's output (rows, order, types), the quarantine and file accounting, and the
rows stored in the audit tables `input_files`, `quarantine` and `accepted_cases`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.database import audit_connection, query_frame
from hitl_gate.core.day_files import PartitionWriter, StagedPartitions, temporary_name
from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.core.slices import output_sink
from hitl_gate.ingest import landing
from hitl_gate.ingest.accepted_spill import AcceptedSpill
from hitl_gate.ingest.day_batch import DayBatch, read_new_files, record_day_batch
from hitl_gate.ingest.landing import discover_landing_files, ingest_files
from tests.unit.ingest.test_day_batch import DAY, NOW, applications, land, registered

EARLIER = date(2018, 1, 2)
ID = "application_id"
TABLES = {
    "input_files": "file_path, status, rows_read, rows_accepted, rows_quarantined, error",
    "quarantine": "file_path, row_number, case_id, column_name, check_name, value, message",
    "accepted_cases": "partition_date, case_id, file_sha256, row_number",
}


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _land_day(landing: Path, domain: DomainConfig) -> None:
    """The held case on an earlier day, then the day's two files and their faults."""
    land(landing, "held.csv", applications(domain, 1, first=40), day=EARLIER)
    first = applications(domain, 30)
    ids = first[ID].to_list()
    first = first.with_columns(
        pl.when(pl.int_range(pl.len()) == 20).then(pl.lit(ids[2])).otherwise(pl.col(ID)).alias(ID),
        pl.when(pl.int_range(pl.len()).is_in([4, 11, 25]))
        .then(pl.lit("lots"))
        .otherwise(pl.col("loan_amount"))
        .alias("loan_amount"),
        pl.when(pl.int_range(pl.len()) == 16)
        .then(pl.lit("2031-01-01T00:00:00"))
        .otherwise(pl.col("application_time"))
        .alias("application_time"),
    )
    second = applications(domain, 20, first=30).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(ids[8])).otherwise(pl.col(ID)).alias(ID)
    )
    land(landing, "a.csv", first)
    land(landing, "b.csv", second)


def _validate(
    landing: Path, domain: DomainConfig, limit: int, folder: Path
) -> tuple[DayBatch, pl.DataFrame, bool, dict[str, pl.DataFrame]]:
    """The day validated as the step does with `limit` rows a slice: batch, output, spilled."""
    with audit_connection(landing / "audit.duckdb") as con:
        held = registered(con, domain, landing, EARLIER)
        record_day_batch(con, domain, read_new_files(held, domain), held, [EARLIER], "run-0", NOW)
        raw = registered(con, domain, landing)
        spill = AcceptedSpill(temporary_name(folder / "accepted.arrow"), limit)
        try:
            result = read_new_files(raw, domain, spill=spill)
            batch = record_day_batch(con, domain, result, raw, [DAY], "run-1", NOW)
            writer = PartitionWriter(folder, [DAY.isoformat()], "lz4")
            with output_sink(lambda: writer, spill.spilled) as sink:
                spill.drain(batch.withheld, sink.write)
            out = sink.result()
        finally:
            spill.discard()
        stored = {
            table: query_frame(
                con, f"SELECT {cols} FROM {table} WHERE partition_date = ? ORDER BY ALL", [DAY]
            )
            for table, cols in TABLES.items()
        }
    if isinstance(out, StagedPartitions):
        out.commit()
        out = pl.read_parquet(folder / f"{DAY.isoformat()}.parquet")
    return batch, out, spill.spilled, stored


@pytest.mark.usefixtures("fresh_audit_db")
def test_a_day_in_slices_of_7_equals_the_day_whole(tmp_path: Path, domain: DomainConfig) -> None:
    _land_day(tmp_path, domain)
    whole_batch, whole, whole_spilled, whole_stored = _validate(
        tmp_path, domain, 1_000, tmp_path / "whole"
    )
    sliced_batch, sliced, sliced_spilled, sliced_stored = _validate(
        tmp_path, domain, 7, tmp_path / "sliced"
    )
    assert (whole_spilled, sliced_spilled) == (False, True)
    # rows in = accepted + quarantined, with each fault caught, across slices and files
    assert (whole_batch.rows_read, whole.height, whole_batch.rows_quarantined) == (50, 43, 7)
    assert sorted(whole_batch.quarantine["check"]) == [
        *["duplicate_case_id"] * 2,  # within a.csv (rows 3 and 21), and b.csv's row 4 of a.csv's
        "duplicate_case_id_across_partitions",
        "future_time",
        *["type"] * 3,
    ]
    assert whole_batch.cases_held_elsewhere == 1 and whole_batch.withheld.height == 1
    assert_frame_equal(sliced, whole)
    assert_frame_equal(sliced_batch.quarantine, whole_batch.quarantine)
    assert_frame_equal(sliced_batch.files, whole_batch.files)
    for table in TABLES:
        assert_frame_equal(sliced_stored[table], whole_stored[table])
    assert not list((tmp_path / "sliced").glob(".*")), "the scratch file is left behind"


def test_a_day_of_text_files_read_one_at_a_time_equals_it_read_all_first(
    tmp_path: Path, domain: DomainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV files are read one at a time, so a column one file parsed as numbers and another as
    text (a bad cell) is not read as text in both: the outcome is the same to the byte."""
    _land_day(tmp_path, domain)
    files = discover_landing_files(tmp_path, domain.landing_subdir, DAY)
    contract, pattern = domain.contract, domain.case_id_pattern
    streamed = ingest_files(files, contract, domain.case_id, pattern, slice_rows=7)
    monkeypatch.setattr(landing, "_is_text_format", lambda _file: False)
    read_first = ingest_files(files, contract, domain.case_id, pattern)
    # a.csv's bad cell makes it all text; b.csv's numbers are read as numbers
    frames = [landing._read_file(f, contract, 1 << 30).frame for f in files]
    mixed = landing._mixed_columns([f for f in frames if f is not None], contract)
    assert "loan_amount" in mixed and "annual_income" in mixed
    assert_frame_equal(streamed.accepted, read_first.accepted)
    assert_frame_equal(streamed.quarantine, read_first.quarantine)
    assert_frame_equal(streamed.files, read_first.files)


def test_held_rows_go_to_the_file_before_a_file_that_would_overflow_the_slice(
    tmp_path: Path,
) -> None:
    """What the spill holds is written away when the next file would take it past one slice,
    so a slice held in memory never meets the next file's frame; a day that fits stays held."""
    rows = pl.DataFrame({"_source_sha256": ["a"] * 6, "_source_row": range(6)})
    fits = AcceptedSpill(tmp_path / "fits.arrow", 10)
    fits.put(rows)
    fits.expect(4)
    overflows = AcceptedSpill(tmp_path / "overflows.arrow", 10)
    overflows.put(rows)
    overflows.expect(5)
    assert (fits.spilled, overflows.spilled) == (False, True)
    overflows.put(rows)
    out: list[pl.DataFrame] = []
    overflows.drain(rows.head(1), out.append)
    overflows.discard()
    # both puts, less the withheld row ("a", 0), which was in both
    assert pl.concat(out)["_source_row"].to_list() == [1, 2, 3, 4, 5] * 2
    assert not (tmp_path / "overflows.arrow").exists()

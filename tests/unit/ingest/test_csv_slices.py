"""A CSV file parsed a slice of rows at a time gives exactly what it gives parsed whole.

Compared each time: the accepted rows (through the spill, as the step writes them), the
quarantine (checks, rows, messages) and the file's accounting (rows in = accepted +
quarantined). Besides bad cells, duplicates and a future time, the faults are those only the
whole file can tell, met at a later slice after earlier ones were validated: a value the reader
cannot take as a number (the file is then read all as text) and a line it cannot read (the
file is rejected whole, its slices taken back).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest import landing
from hitl_gate.ingest.accepted_spill import AcceptedSpill
from hitl_gate.ingest.csv_slices import CsvInSlices
from hitl_gate.ingest.landing import IngestResult, discover_landing_files, ingest_files
from tests.unit.ingest.test_day_batch import DAY, applications

ID = "application_id"


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


class _CountingSpill(AcceptedSpill):
    """The spill, counting the slices it was given and then had taken back."""

    taken_back = 0

    def undo(self, mark: int) -> None:
        self.taken_back += self._puts - mark
        super().undo(mark)


def _cells(column: str, values: dict[int, str]) -> pl.Expr:
    """`column` with the values at the given row positions replaced."""
    at = pl.int_range(pl.len())
    replaced = pl.col(column)
    for row, value in values.items():
        replaced = pl.when(at == row).then(pl.lit(value)).otherwise(replaced)
    return replaced.alias(column)


def _land(landing_root: Path, text: bytes) -> list[landing.LandingFile]:
    folder = landing_root / "applications" / DAY.isoformat()
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(text)
    return discover_landing_files(landing_root, "applications", DAY)


def _both(
    files: list[landing.LandingFile], domain: DomainConfig, slice_rows: int, scratch: Path
) -> tuple[IngestResult, IngestResult, pl.DataFrame, _CountingSpill]:
    """The file read whole (no slices), then in slices with its rows through a spill."""
    args = (domain.contract, domain.case_id, domain.case_id_pattern)
    whole = ingest_files(files, *args)
    spill = _CountingSpill(scratch, slice_rows)
    try:
        sliced = ingest_files(files, *args, slice_rows=slice_rows, sink=spill)
        out: list[pl.DataFrame] = []
        spill.drain(sliced.accepted.clear().select("_source_sha256", "_source_row"), out.append)
    finally:
        spill.discard()
    return whole, sliced, pl.concat(out), spill


def _assert_same(whole: IngestResult, sliced: IngestResult, written: pl.DataFrame) -> None:
    assert_frame_equal(written, whole.accepted)
    assert_frame_equal(sliced.quarantine, whole.quarantine)
    assert_frame_equal(sliced.files, whole.files)
    (files,) = sliced.files.iter_rows(named=True)
    assert files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"]


def test_a_file_read_in_slices_of_7_equals_it_read_whole(
    tmp_path: Path, domain: DomainConfig
) -> None:
    frame = applications(domain, 50)
    frame = frame.with_columns(
        _cells(ID, {30: frame[ID][2]}),
        _cells("loan_amount", {4: "lots", 45: "lots"}),
        _cells("application_time", {16: "2031-01-01T00:00:00"}),
        _cells("emp_title", {9: "line one\nline two"}),  # quoted, across a line end
    )
    lines = frame.write_csv().splitlines(keepends=True)
    # blank lines count as rows read past (numbering) but hold no case
    text = "".join([*lines[:12], "\n", ",,,\n", *lines[12:40], "\n", *lines[40:]])
    files = _land(tmp_path / "landing", text.encode())
    assert isinstance(landing._read_file(files[0], domain.contract, 1 << 30, 7), CsvInSlices)

    whole, sliced, written, _ = _both(files, domain, 7, tmp_path / "accepted.arrow")

    _assert_same(whole, sliced, written)
    assert sorted(whole.quarantine["check"]) == [
        "duplicate_case_id",
        "future_time",
        *["type"] * 2,
    ]
    assert whole.files["rows_read"].to_list() == [50]
    # numbered as lines after the header: row 46 follows three blank ones
    bad = whole.quarantine.filter(pl.col("check") == "type")
    assert bad["row_number"].to_list() == [5, 49]


def test_a_late_value_that_is_not_a_number_reads_the_file_as_text_in_slices_too(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """The reader parses numbers itself until one is not a number; then the whole file is
    read as text, which shows a bad cell as written (' 5', not the reader's 5.0): slices
    already validated with numbers are taken back, not kept beside later ones read as text."""
    frame = applications(domain, 500).with_columns(
        _cells("loan_amount", {10: " 5", 499: "n/a"}),  # ' 5': below the minimum loan
    )
    files = _land(tmp_path / "landing", frame.write_csv().encode())

    whole, sliced, written, spill = _both(files, domain, 100, tmp_path / "accepted.arrow")

    _assert_same(whole, sliced, written)
    assert spill.taken_back > 0, "no slice was validated before the bad number: test too small"
    shown = whole.quarantine.filter(pl.col("column") == "loan_amount")
    assert shown.select("row_number", "check", "value").rows() == [
        (11, "min", " 5"),
        (500, "type", "n/a"),
    ]


@pytest.mark.parametrize("good_rows", [500, 450])
def test_a_late_line_the_reader_cannot_read_rejects_the_file_as_whole(
    tmp_path: Path, domain: DomainConfig, good_rows: int
) -> None:
    """The broken line first in a slice (row 501 in slices of 100), or inside one."""
    text = applications(domain, good_rows).write_csv().encode() + b'LC18-999999,"never closed\n'
    files = _land(tmp_path / "landing", text)

    whole, sliced, written, spill = _both(files, domain, 100, tmp_path / "accepted.arrow")

    _assert_same(whole, sliced, written)
    assert spill.taken_back >= 4  # the slices validated before the broken line, taken back
    assert whole.files["status"].to_list() == ["rejected"] and written.height == 0
    assert whole.quarantine["check"].to_list() == ["file_unreadable"]


@pytest.mark.parametrize("last_line_end", [b"\n", b""])
def test_a_file_of_one_slice_is_parsed_whole(
    tmp_path: Path, domain: DomainConfig, last_line_end: bytes
) -> None:
    """A day within one slice keeps the whole-file read (and its speed): 10 rows, 10 a slice."""
    text = applications(domain, 10).write_csv().encode().removesuffix(b"\n") + last_line_end
    (file,) = _land(tmp_path / "landing", text)
    whole = landing._read_file(file, domain.contract, 1 << 30, 10)
    assert isinstance(whole, landing._Read) and whole.rows_read == 10
    assert isinstance(landing._read_file(file, domain.contract, 1 << 30, 9), CsvInSlices)

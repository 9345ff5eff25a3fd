"""Case ids repeated across a day's files: found however many files lie between, reported with
file, row and column, and a file rejected after some of its slices were validated takes its
ids back (a later file may use them). Rows in = accepted + quarantined throughout."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import DomainConfig, load_domain
from hitl_gate.ingest.landing import IngestResult, discover_landing_files, ingest_files
from tests.unit.ingest.test_day_batch import DAY, applications, land

ID = "application_id"


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


def _ingest(landing: Path, domain: DomainConfig, slice_rows: int | None) -> IngestResult:
    files = discover_landing_files(landing, "applications", DAY)
    result = ingest_files(files, domain.contract, domain.case_id, slice_rows=slice_rows)
    counts = result.files.select(pl.col("rows_read", "rows_accepted", "rows_quarantined").sum())
    read, accepted, quarantined = counts.row(0)
    rows = result.quarantine.filter(pl.col("row_number").is_not_null())
    assert (
        read
        == accepted + quarantined
        == result.accepted.height + rows.n_unique(["file_path", "row_number"])
    )
    return result


@pytest.mark.parametrize("slice_rows", [None, 7])
def test_a_case_id_of_file_1_repeated_in_file_9_is_quarantined_there(
    tmp_path: Path, domain: DomainConfig, slice_rows: int | None
) -> None:
    landing = tmp_path / "landing"
    first = applications(domain, 20)
    for i in range(10):
        frame = first if i == 0 else applications(domain, 20, first=20 * i)
        if i == 8:
            frame = frame.with_columns(frame[ID].scatter(6, first[ID][3]))
        land(landing, f"part-{i}.csv", frame)

    result = _ingest(landing, domain, slice_rows)

    (dup,) = result.quarantine.iter_rows(named=True)
    assert Path(dup["file_path"]).name == "part-8.csv"
    assert (dup["row_number"], dup["column"], dup["check"]) == (7, ID, "duplicate_case_id")
    assert dup["case_id"] == first[ID][3]
    assert result.files["rows_accepted"].to_list() == [20] * 8 + [19, 20]


def test_a_file_rejected_after_validated_slices_takes_its_case_ids_back(
    tmp_path: Path, domain: DomainConfig
) -> None:
    """b.csv is validated 100 rows a slice until its broken last line rejects it whole; c.csv
    then holds b.csv's first 300 ids (all new: b.csv's were taken back, a.csv's kept), d.csv
    repeats one of a.csv's and five of c.csv's."""
    landing = tmp_path / "landing"
    land(landing, "a.csv", applications(domain, 10, first=1000))
    folder = landing / "applications" / DAY.isoformat()
    broken = applications(domain, 500).write_csv().encode() + b'LC18-999999,"never closed\n'
    (folder / "b.csv").write_bytes(broken)
    land(landing, "c.csv", applications(domain, 300))
    land(
        landing,
        "d.csv",
        pl.concat([applications(domain, 5, first=290), applications(domain, 1, first=1004)]),
    )

    result = _ingest(landing, domain, slice_rows=100)

    assert result.files.select("status", "rows_accepted").rows() == [
        ("accepted", 10),
        ("rejected", 0),
        ("accepted", 300),
        ("accepted", 0),
    ]
    dups = result.quarantine.filter(pl.col("check") == "duplicate_case_id")
    assert {Path(p).name for p in dups["file_path"]} == {"d.csv"}
    assert dups["row_number"].to_list() == [1, 2, 3, 4, 5, 6]

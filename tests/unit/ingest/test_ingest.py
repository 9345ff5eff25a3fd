"""Landing-file ingestion against the consumer credit contract, on real files in tmp_path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from hitl_gate.core.domain import PROJECT_ROOT, DomainConfig, load_domain
from hitl_gate.ingest.landing import (
    FILES_SCHEMA,
    QUARANTINE_SCHEMA,
    IngestResult,
    LandingFile,
    accepted_schema,
    discover_landing_files,
    ingest_files,
)
from hitl_gate.quality.contract import polars_dtype

SAMPLE = PROJECT_ROOT / "data" / "sample" / "lendingclub_loans_2018q1.parquet"
DAY = date(2018, 1, 3)


@pytest.fixture(scope="module")
def domain() -> DomainConfig:
    return load_domain("consumer_credit")


@pytest.fixture(scope="module")
def sample(domain: DomainConfig) -> pl.DataFrame:
    """The first 500 real applications as text, shaped to the contract."""
    raw = pl.read_parquet(SAMPLE).head(500)
    shaped = raw.with_columns(
        application_id=pl.format("LC18-{}", pl.col("rownames").cast(pl.String).str.zfill(6)),
        application_time=(
            pl.datetime(2018, 1, 3, 8) + pl.duration(minutes=pl.col("rownames"))
        ).dt.to_string("%Y-%m-%dT%H:%M:%S"),
    )
    return shaped.select(pl.col(c).cast(pl.String) for c in domain.contract.columns)


def _landing(root: Path, name: str, write: Callable[[Path], None]) -> LandingFile:
    """Write one file into the day's landing folder and discover it like the pipeline does."""
    folder = root / "applications" / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / name)
    return next(f for f in discover_landing_files(root, "applications", DAY) if f.path.name == name)


def _csv(root: Path, name: str, frame: pl.DataFrame) -> LandingFile:
    return _landing(root, name, frame.write_csv)


def _bytes(root: Path, name: str, data: bytes) -> LandingFile:
    return _landing(root, name, lambda p: p.write_bytes(data))


def _ingest(domain: DomainConfig, files: list[LandingFile]) -> IngestResult:
    result = ingest_files(files, domain.contract, domain.case_id)
    _assert_accounted(result)
    return result


def _assert_accounted(result: IngestResult) -> None:
    """Every row read is accepted or quarantined exactly once, per file and in total."""
    files, quarantine, accepted = result.files, result.quarantine, result.accepted
    assert files.schema == pl.Schema(FILES_SCHEMA)
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert (files["rows_read"] == files["rows_accepted"] + files["rows_quarantined"]).all()
    for row in files.iter_rows(named=True):
        mine = quarantine.filter(pl.col("file_path") == row["file_path"])
        assert (
            accepted.filter(pl.col("_source_file") == row["file_path"]).height
            == row["rows_accepted"]
        )
        if row["status"] == "rejected":
            assert mine.height == 1 and mine["row_number"].is_null().all()
            assert row["rows_accepted"] == 0 and row["error"] == mine["message"].item()
        else:
            assert mine["row_number"].n_unique() == row["rows_quarantined"]
            assert mine["row_number"].null_count() == 0
    assert accepted.height + files["rows_quarantined"].sum() == files["rows_read"].sum()


def test_valid_sample_is_accepted_typed_and_traced(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    landing = _csv(tmp_path, "apps.csv", sample)
    result = _ingest(domain, [landing])
    contract = domain.contract.columns
    assert result.quarantine.is_empty()
    assert result.accepted.columns == [
        *contract,
        "_source_file",
        "_source_sha256",
        "_source_row",
        "partition_date",
    ]
    for name, column in contract.items():
        assert result.accepted.schema[name] == polars_dtype(column)
    assert result.accepted["_source_row"].to_list() == list(range(1, 501))
    assert set(result.accepted["_source_sha256"]) == {landing.sha256}
    assert set(result.accepted["partition_date"]) == {DAY}
    assert result.accepted["application_time"][0] == datetime(2018, 1, 3, 8, 1)
    expected = pl.read_parquet(SAMPLE).head(500)
    assert (
        result.accepted["loan_amount"].to_list()
        == expected["loan_amount"].cast(pl.Float64).to_list()
    )
    files = result.files.row(0, named=True)
    assert files["status"] == "accepted" and files["error"] is None
    assert (files["rows_read"], files["rows_accepted"], files["size_bytes"]) == (
        500,
        500,
        landing.size_bytes,
    )


def test_parquet_and_jsonl_give_the_same_rows_as_csv(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    typed = ingest_files(
        [_csv(tmp_path / "csv", "a.csv", sample)], domain.contract, domain.case_id
    ).accepted
    native = (
        pl.read_parquet(SAMPLE)
        .head(500)
        .with_columns(
            application_id=sample["application_id"],
            application_time=sample["application_time"].str.to_datetime(),
        )
    )
    files = [
        _landing(tmp_path, "a.parquet", native.write_parquet),
        _landing(
            tmp_path,
            "b.jsonl",
            native.with_columns(application_id=pl.col("application_id") + "-J").write_ndjson,
        ),
    ]
    result = _ingest(domain, files)
    assert result.quarantine.is_empty()
    columns = list(domain.contract.columns)
    got = result.accepted.select(columns)
    assert got.head(500).equals(typed.select(columns))
    assert got.tail(500).drop("application_id").equals(typed.select(columns).drop("application_id"))


def test_typed_parquet_values_convert_exactly(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    native = (
        pl.read_parquet(SAMPLE)
        .head(4)
        .with_columns(
            application_id=sample["application_id"].head(4),
            application_time=pl.Series([datetime(2018, 1, 3, 11, 15)] * 4).dt.replace_time_zone(
                "Europe/Paris"
            ),
            loan_amount=pl.Series([1000.0, float("nan"), 2000.0, 3000.0]),
            term=pl.Series([36.0, 60.0, 36.5, 60.0]),
        )
    )
    result = _ingest(domain, [_landing(tmp_path, "a.parquet", native.write_parquet)])
    assert result.accepted.schema == accepted_schema(domain.contract)
    assert result.accepted["application_time"].to_list() == [datetime(2018, 1, 3, 10, 15)] * 2
    assert result.accepted["term"].to_list() == [36, 60]
    assert result.quarantine.select("row_number", "column", "check", "value").rows() == [
        (2, "loan_amount", "type", "NaN"),
        (3, "term", "type", "36.5"),
    ]


def test_extra_columns_are_ignored(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    result = _ingest(domain, [_csv(tmp_path, "a.csv", sample.with_columns(note=pl.lit("x")))])
    assert result.accepted.height == 500 and "note" not in result.accepted.columns
    assert result.files["status"].to_list() == ["accepted"]


def _put(frame: pl.DataFrame, row: int, **values: str | None) -> pl.DataFrame:
    """`frame` with the given columns replaced at 1-based data row `row`."""
    index = pl.int_range(pl.len()) == row - 1
    return frame.with_columns(
        pl.when(index).then(pl.lit(v, pl.String)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def test_bad_rows_are_quarantined_with_their_reasons(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    bad = sample
    bad = _put(bad, 17, loan_amount="abc")
    bad = _put(bad, 18, loan_amount="45000", interest_rate="-1")
    bad = _put(bad, 19, homeownership="CASTLE")
    bad = _put(bad, 20, grade=None, state="")
    bad = _put(bad, 21, term="37")
    bad = _put(bad, 22, application_time="3rd of January")
    bad = _put(bad, 23, term="60.0", delinq_2y=" 0 ")  # forgiving forms still parse
    result = _ingest(domain, [_csv(tmp_path, "a.csv", bad)])
    rows = result.quarantine.select("row_number", "column", "check").rows()
    assert rows == [
        (17, "loan_amount", "type"),
        (18, "interest_rate", "min"),
        (18, "loan_amount", "max"),
        (19, "homeownership", "allowed"),
        (20, "grade", "not_null"),
        (20, "state", "not_null"),
        (21, "term", "allowed"),
        (22, "application_time", "type"),
    ]
    first = result.quarantine.row(0, named=True)
    assert first["message"] == "column 'loan_amount' row 17: 'abc' is not a float"
    assert first["case_id"] == "LC18-000017" and first["value"] == "abc"
    assert result.files.select("rows_accepted", "rows_quarantined").row(0) == (494, 6)
    assert 23 in result.accepted["_source_row"].to_list()


def test_duplicate_case_ids_keep_the_first_file_and_row(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    first = _csv(tmp_path, "a.csv", sample.head(10))
    repeat = sample.slice(5, 10)  # rows 6-10 repeat a.csv, rows 11-15 are new
    repeat = pl.concat([repeat, repeat.slice(9, 1)])  # and the last row twice
    second = _csv(tmp_path, "b.csv", repeat)
    result = _ingest(domain, [first, second])
    dups = result.quarantine
    assert set(dups["check"]) == {"duplicate_case_id"}
    assert set(dups["file_path"]) == {str(second.path)}
    assert dups["row_number"].to_list() == [1, 2, 3, 4, 5, 11]
    assert result.accepted["application_id"].is_unique().all()
    assert result.files["rows_accepted"].to_list() == [10, 5]


def test_files_validated_one_by_one_still_see_ids_of_earlier_invalid_rows(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    # Files are validated one at a time; an id's first occurrence counts even when that row is
    # itself quarantined, and a later file typed differently (Parquet) is compared by value.
    first = _csv(tmp_path, "a.csv", _put(sample.head(3), 2, loan_amount="abc"))
    typed = sample.slice(1, 3).with_columns(pl.col("loan_amount").cast(pl.Float64))
    second = _landing(tmp_path, "b.parquet", typed.write_parquet)
    third = _csv(tmp_path, "c.csv", sample.slice(3, 2))  # repeats b's last row, adds one
    result = _ingest(domain, [first, second, third])
    entries = result.quarantine.select("file_path", "row_number", "check").rows()
    assert entries == [
        (str(first.path), 2, "type"),
        (str(second.path), 1, "duplicate_case_id"),  # a.csv's invalid row 2
        (str(second.path), 2, "duplicate_case_id"),  # a.csv's row 3
        (str(third.path), 1, "duplicate_case_id"),  # b.parquet's row 3
    ]
    assert result.files["rows_accepted"].to_list() == [2, 1, 1]


def test_application_time_after_arrival_is_quarantined(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    future = _put(sample.head(3), 2, application_time="2999-01-01T00:00:00")
    result = _ingest(domain, [_csv(tmp_path, "a.csv", future)])
    entry = result.quarantine.row(0, named=True)
    assert (entry["row_number"], entry["check"], entry["column"]) == (
        2,
        "future_time",
        "application_time",
    )
    assert "2999-01-01T00:00:00" in entry["message"]
    assert result.accepted["_source_row"].to_list() == [1, 3]


def _latin1(sample: pl.DataFrame) -> bytes:
    text = _put(sample.head(5), 2, emp_title="caf\u00e9 owner").write_csv()
    return text.encode("latin-1")


def _truncated_parquet(sample: pl.DataFrame, path: Path) -> None:
    sample.write_parquet(path)
    path.write_bytes(path.read_bytes()[:-40])


def _no_grade_or_term(sample: pl.DataFrame, path: Path) -> None:
    sample.drop("grade", "term").write_csv(path)


def _no_grade_parquet(sample: pl.DataFrame, path: Path) -> None:
    sample.drop("grade").write_parquet(path)


def _header_only(sample: pl.DataFrame, path: Path) -> None:
    sample.head(0).write_csv(path)


def _repeated_header(sample: pl.DataFrame, path: Path) -> None:
    text = sample.head(4).write_csv()
    header, rest = text.split("\n", 1)
    path.write_text(f"{header},grade\n" + "".join(f"{line},A\n" for line in rest.splitlines()))


def _writes(data: bytes) -> Callable[[pl.DataFrame, Path], None]:
    return lambda _sample, path: path.write_bytes(data)


@pytest.mark.parametrize(
    ("name", "make", "check", "rows", "words"),
    [
        ("a.csv", _no_grade_or_term, "missing_columns", 500, "missing columns: term, grade"),
        ("a.csv", _writes(b""), "empty_file", 0, "empty"),
        ("a.csv", _header_only, "empty_file", 0, "no data rows"),
        ("a.csv", lambda s, p: p.write_bytes(_latin1(s)), "encoding", 5, "not valid UTF-8"),
        ("a.csv", _writes(b"a,b\n1,2,3,4\n"), "file_unreadable", 0, "cannot read"),
        ("a.csv", _repeated_header, "duplicate_columns", 4, "repeated columns: grade"),
        ("a.parquet", _truncated_parquet, "file_unreadable", 0, "cannot read"),
        ("a.parquet", _no_grade_parquet, "missing_columns", 500, "missing columns: grade"),
        ("a.jsonl", _writes(b'{"application_id": "x"}\n{oops\n'), "file_unreadable", 0, "cannot"),
        ("a.jsonl", _writes(b'{"application_id": "\xff"}\n'), "encoding", 0, "not valid UTF-8"),
        ("a.jsonl", _writes(b"\n\n"), "empty_file", 0, "whitespace"),
        ("a.jsonl", _writes(b'{"application_id": "x"}\n'), "missing_columns", 1, "grade"),
    ],
)
def test_unusable_files_are_quarantined_whole(
    tmp_path: Path,
    domain: DomainConfig,
    sample: pl.DataFrame,
    name: str,
    make: Callable[[pl.DataFrame, Path], None],
    check: str,
    rows: int,
    words: str,
) -> None:
    good = _csv(tmp_path, "0-good.csv", sample.head(20))
    bad = _landing(tmp_path, name, lambda p: make(sample, p))
    result = _ingest(domain, [good, bad])
    entry = result.quarantine.row(0, named=True)
    assert result.quarantine.height == 1
    assert (entry["check"], entry["row_number"], entry["file_sha256"]) == (check, None, bad.sha256)
    assert str(bad.path) in entry["message"] and words in entry["message"]
    status = result.files.select("status", "rows_read", "rows_quarantined").rows()
    assert status == [("accepted", 20, 0), ("rejected", rows, rows)]
    assert result.accepted.height == 20


def test_blank_csv_lines_are_not_rows(
    tmp_path: Path, domain: DomainConfig, sample: pl.DataFrame
) -> None:
    header, *lines = sample.head(3).write_csv().splitlines()
    text = "\n".join([header, lines[0], lines[1], "", lines[2], "", ""]) + "\n"
    result = _ingest(domain, [_bytes(tmp_path, "a.csv", text.encode())])
    assert result.quarantine.is_empty()
    assert result.accepted["_source_row"].to_list() == [1, 2, 4]
    assert result.files["rows_read"].to_list() == [3]


def test_no_files_gives_empty_frames_with_the_right_columns(domain: DomainConfig) -> None:
    result = _ingest(domain, [])
    assert result.accepted.is_empty() and result.files.is_empty()
    assert result.accepted.schema["loan_amount"] == pl.Float64
    assert result.accepted.schema["_source_row"] == pl.Int64
    assert result.accepted.schema == accepted_schema(domain.contract)


def test_an_empty_batch_follows_its_own_contract(domain: DomainConfig) -> None:
    """A day without files gives the columns of its own contract: one whose column type
    changed gets that type, not what an earlier empty day gave (the validated empty batch is
    kept per process, landing.py `_validated_empty_batch`)."""
    first = ingest_files([], domain.contract, domain.case_id)
    assert first.accepted.schema == accepted_schema(domain.contract)
    columns = dict(domain.contract.columns)
    columns["loan_amount"] = columns["loan_amount"].model_copy(update={"type": "int"})
    changed = domain.contract.model_copy(update={"columns": columns})
    result = ingest_files([], changed, domain.case_id)
    assert result.accepted.schema == accepted_schema(changed)
    assert result.accepted.schema["loan_amount"] == polars_dtype(columns["loan_amount"])
    assert result.accepted.schema["loan_amount"] != pl.Float64


def test_discover_hashes_and_sorts_the_days_files(tmp_path: Path) -> None:
    folder = tmp_path / "applications" / DAY.isoformat()
    folder.mkdir(parents=True)
    for name in ["b.csv", "a.parquet", "c.jsonl", "notes.txt", ".partial.csv"]:
        (folder / name).write_bytes(name.encode() * 3)
    os.utime(folder / "b.csv", (1_514_970_000, 1_514_970_000))
    (tmp_path / "applications" / "2018-01-04").mkdir()
    (tmp_path / "applications" / "2018-01-04" / "other.csv").write_text("x")
    found = discover_landing_files(tmp_path, "applications", DAY)
    assert [f.path.name for f in found] == ["a.parquet", "b.csv", "c.jsonl"]
    b = found[1]
    assert b.sha256 == hashlib.sha256(b"b.csv" * 3).hexdigest()
    assert b.size_bytes == 15 and b.partition_date == DAY
    assert b.arrived_at == datetime.fromtimestamp(1_514_970_000, tz=UTC)
    assert b.arrived_at.tzinfo is not None


def test_discover_without_a_folder_for_the_day_finds_nothing(tmp_path: Path) -> None:
    assert discover_landing_files(tmp_path, "applications", DAY) == []


def test_a_gzip_bomb_is_refused_naming_the_file_and_every_file_is_counted(
    domain: DomainConfig, sample: pl.DataFrame, tmp_path: Path
) -> None:
    import gzip

    from hitl_gate.ingest.listing import LandingRules, list_day_folder
    from tests.unit.ingest.test_gunzip import bomb

    folder = tmp_path / "applications" / DAY.isoformat()
    folder.mkdir(parents=True)
    text = sample.head(20).write_csv().encode()
    (folder / "a_good.csv.gz").write_bytes(gzip.compress(text))
    (folder / "b_bomb.csv.gz").write_bytes(bomb(64))  # 64 MiB of zeros from ~64 KB
    (folder / "c_notes.txt").write_text("not a landing format")
    listing = list_day_folder(folder, DAY, LandingRules(formats=("csv", "csv.gz")))
    result = ingest_files(
        listing.files, domain.contract, domain.case_id, max_gunzip_bytes=4 * len(text)
    )
    _assert_accounted(result)
    files = {Path(r["file_path"]).name: r for r in result.files.iter_rows(named=True)}
    assert files["a_good.csv.gz"]["rows_accepted"] == 20
    refused = files["b_bomb.csv.gz"]
    assert refused["status"] == "rejected" and refused["rows_read"] == 0
    assert "b_bomb.csv.gz: gzip data expands beyond" in refused["error"]
    assert "HITL_LANDING_MAX_GUNZIP_BYTES" in refused["error"]
    assert result.quarantine["check"].to_list() == ["decompressed_too_large"]
    # Files seen = files ingested (accepted or rejected whole, as input_files records them)
    # + files refused at listing: the bomb is ingested-and-rejected, never lost.
    assert listing.seen == result.files.height + len(listing.refused) == 3

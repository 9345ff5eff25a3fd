"""A day's landed files from registration to accepted cases: the accounting of the ingest stage.

`raw_cases` is the day's registered files as one frame (`registered_files_frame`);
`validated_cases` reads the new ones against the contract (`read_new_files`, outside any
database connection) and records the outcome in one go (`record_day_batch`): the contract,
cases another partition already holds moved to quarantine, the file and quarantine slices of
the days replaced, the accepted case ids registered. Every row read is accepted or quarantined
and every file (repeats included) has an accounting row.

A big day is read in slices (`read_new_files` with an `AcceptedSpill`): its accepted rows wait
in the spill and only their keys reach `record_day_batch`; the rows it withholds are in
`DayBatch.withheld`, for the spill to leave out of the step's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.core.database import replace_partition_slice
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.settings import DEFAULT_MAX_GUNZIP_BYTES
from hitl_gate.ingest.accepted_spill import WITHHELD_KEYS, AcceptedSpill
from hitl_gate.ingest.landing import (
    IngestResult,
    LandingFile,
    duplicate_files_frame,
    ingest_files,
    withhold_known_cases,
)
from hitl_gate.ingest.landing_registry import (
    RegisteredFile,
    cases_accepted_elsewhere,
    record_accepted_cases,
    record_contract,
)
from hitl_gate.quality.contract import contract_digest

RAW_CASES_SCHEMA = pl.Schema(
    {
        "partition_date": pl.Date(),
        "file_path": pl.String(),
        "file_sha256": pl.String(),
        "size_bytes": pl.Int64(),
        "arrived_at": pl.Datetime("us", "UTC"),
        "file_version": pl.Int64(),
        "duplicate_of": pl.String(),
    }
)


def registered_files_frame(registered: Sequence[RegisteredFile]) -> pl.DataFrame:
    """The `raw_cases` frame: one row per registered file, its version and what it repeats."""
    return pl.DataFrame(
        {
            "partition_date": [r.file.partition_date for r in registered],
            "file_path": [str(r.file.path) for r in registered],
            "file_sha256": [r.file.sha256 for r in registered],
            "size_bytes": [r.file.size_bytes for r in registered],
            "arrived_at": [r.file.arrived_at for r in registered],
            "file_version": [r.version for r in registered],
            "duplicate_of": [r.duplicate_of for r in registered],
        },
        schema=RAW_CASES_SCHEMA,
    )


def landing_file(row: dict) -> LandingFile:
    """The landing file a `raw_cases` row describes."""
    return LandingFile(
        path=Path(row["file_path"]),
        sha256=row["file_sha256"],
        size_bytes=row["size_bytes"],
        partition_date=row["partition_date"],
        arrived_at=row["arrived_at"],
    )


def new_files(raw_cases: pl.DataFrame) -> list[LandingFile]:
    """Files whose bytes were seen for the first time: the only ones read."""
    return [
        landing_file(r)
        for r in raw_cases.filter(pl.col("duplicate_of").is_null()).iter_rows(named=True)
    ]


def repeated_files(raw_cases: pl.DataFrame) -> list[tuple[LandingFile, str]]:
    """Files whose bytes were ingested before, with the file they repeat."""
    repeats = raw_cases.filter(pl.col("duplicate_of").is_not_null())
    return [(landing_file(r), r["duplicate_of"]) for r in repeats.iter_rows(named=True)]


def read_new_files(
    raw_cases: pl.DataFrame,
    domain: DomainConfig,
    max_gunzip_bytes: int = DEFAULT_MAX_GUNZIP_BYTES,
    spill: AcceptedSpill | None = None,
) -> IngestResult:
    """Read the day's new files and hold every row to the domain's contract.

    With `spill`, the files are validated in slices of `spill.limit` rows and the accepted rows
    go to `spill` (stamped with the contract), the result keeping only their keys.
    """
    return ingest_files(
        new_files(raw_cases),
        domain.contract,
        domain.case_id,
        domain.case_id_pattern,
        max_gunzip_bytes,
        slice_rows=spill.limit if spill is not None else None,
        sink=_Stamping(spill, domain, contract_digest(domain.contract)) if spill else None,
    )


@dataclass(frozen=True)
class _Stamping:
    """The spill as `ingest_files` fills it: each slice stamped with the contract first."""

    spill: AcceptedSpill
    domain: DomainConfig
    digest: str

    def put(self, frame: pl.DataFrame) -> None:
        self.spill.put(stamped(frame, self.domain, self.digest))

    def expect(self, rows: int) -> None:
        self.spill.expect(rows)

    def mark(self) -> int:
        return self.spill.mark()

    def undo(self, mark: int) -> None:
        self.spill.undo(mark)


def stamped(accepted: pl.DataFrame, domain: DomainConfig, digest: str) -> pl.DataFrame:
    """Accepted rows with the contract version and digest they were accepted under."""
    return accepted.with_columns(
        pl.lit(domain.contract.version).alias("_contract_version"),
        pl.lit(digest).alias("_contract_digest"),
    )


@dataclass(frozen=True)
class DayBatch:
    """What a day's ingestion recorded: accepted cases, per-file accounting, quarantine."""

    accepted: pl.DataFrame  # with `_contract_version` and `_contract_digest` (keys if spilled)
    files: pl.DataFrame  # one row per file read (repeats not included)
    quarantine: pl.DataFrame  # one row per quarantined row and reason
    duplicate_files: int
    cases_held_elsewhere: int
    contract_digest: str
    contract_version: int
    # (`_source_sha256`, `_source_row`) of accepted rows moved to quarantine here
    withheld: pl.DataFrame

    @property
    def rows_accepted(self) -> int:
        return int(self.files["rows_accepted"].sum() or 0)

    @property
    def rows_read(self) -> int:
        return int(self.files["rows_read"].sum() or 0)

    @property
    def rows_quarantined(self) -> int:
        return int(self.files["rows_quarantined"].sum() or 0)

    @property
    def files_rejected(self) -> int:
        return int((self.files["status"] == "rejected").sum())


def file_accounting_rows(
    result: IngestResult,
    repeats: list[tuple[LandingFile, str]],
    domain: DomainConfig,
    digest: str,
    run_id: str,
    now: datetime,
) -> pl.DataFrame:
    """Rows of the audit table `input_files`: files read and repeats, with contract and run."""
    return pl.concat([result.files, duplicate_files_frame(repeats)]).with_columns(
        pl.lit(domain.name).alias("domain"),
        pl.lit(domain.contract.version).alias("contract_version"),
        pl.lit(digest).alias("contract_digest"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("recorded_at"),
    )


def quarantine_rows(result: IngestResult, domain: str, run_id: str) -> pl.DataFrame:
    """Rows of the audit table `quarantine` (its column names avoid SQL keywords)."""
    return result.quarantine.rename({"column": "column_name", "check": "check_name"}).with_columns(
        pl.lit(domain).alias("domain"), pl.lit(run_id).alias("run_id")
    )


def record_day_batch(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    result: IngestResult,
    raw_cases: pl.DataFrame,
    days: Sequence[date],
    run_id: str,
    now: datetime,
) -> DayBatch:
    """Record the days' ingestion in the audit database and return what was accepted.

    Raises `ContractVersionConflict` when the contract's version number was recorded before
    with other content. Cases another partition already accepted are quarantined here, so a
    case id is decided once.
    """
    days = list(days)
    digest = contract_digest(domain.contract)
    record_contract(con, domain.name, domain.contract, digest, run_id, now)
    known = cases_accepted_elsewhere(con, domain.name, result.accepted[domain.case_id], days)
    read = result.accepted
    result = withhold_known_cases(result, known, domain.case_id)
    withheld = (
        read.select(WITHHELD_KEYS).join(
            result.accepted.select(WITHHELD_KEYS), on=WITHHELD_KEYS, how="anti"
        )
        if result.accepted.height < read.height
        else pl.DataFrame(schema={k: read.schema[k] for k in WITHHELD_KEYS})
    )
    del read
    repeats = repeated_files(raw_cases)
    file_rows = file_accounting_rows(result, repeats, domain, digest, run_id, now)
    replace_partition_slice(con, "input_files", file_rows, domain.name, days)
    replace_partition_slice(
        con, "quarantine", quarantine_rows(result, domain.name, run_id), domain.name, days
    )
    record_accepted_cases(con, domain.name, result.accepted, domain.case_id, days, run_id)
    return DayBatch(
        accepted=stamped(result.accepted, domain, digest),
        files=result.files,
        quarantine=result.quarantine,
        duplicate_files=len(repeats),
        cases_held_elsewhere=known.height,
        contract_digest=digest,
        contract_version=domain.contract.version,
        withheld=withheld,
    )

"""What ingestion remembers across runs: file contents by hash, accepted case ids, contracts.

Each run of a day re-reads that day's landing folder, so the registry is what makes the
landing zone safe to re-deliver into: identical bytes are ingested once (in the partition
where they were first seen), a changed file under the same name becomes the next version of
that name, a case id is accepted in one partition only, and a contract version names exactly
one contract digest. All of it lives in the audit DuckDB (`audit/schema/10_ingestion.sql`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import polars as pl

from hitl_gate.core.database import insert_new_rows, query_frame, replace_partition_slice, scalar
from hitl_gate.core.domain import ContractConfig
from hitl_gate.ingest.listing import DayListing, LandingFile
from hitl_gate.quality.case_ids import canonical_case_ids


@dataclass(frozen=True)
class RegisteredFile:
    """A discovered file with its version, or the earlier file whose bytes it repeats."""

    file: LandingFile
    version: int
    duplicate_of: str | None = None


class ContractVersionConflict(ValueError):
    """A contract changed without a new version number: old decisions would be ambiguous."""


def _known(con: duckdb.DuckDBPyConnection, domain: str, sha256: str) -> dict | None:
    """Where and as which version these bytes were first registered, if they were.

    One row at most, fetched as a tuple: a Polars frame for it cost a run more than the query.
    """
    found = con.execute(
        "SELECT partition_date, file_path, version FROM file_versions "
        "WHERE domain = ? AND file_sha256 = ? LIMIT 1",
        [domain, sha256],
    ).fetchall()
    if not found:
        return None
    partition_date, file_path, version = found[0]
    return {"partition_date": partition_date, "file_path": file_path, "version": version}


def register_files(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    files: Sequence[LandingFile],
    run_id: str,
    now: datetime,
) -> list[RegisteredFile]:
    """Record new contents and classify each discovered file, in discovery order.

    A file is a duplicate when its bytes were first registered in another partition, or when an
    earlier file of this batch has the same bytes; otherwise it is ingested, under the version
    its content was first registered with (re-runs find it again, so they change nothing).
    """
    out: list[RegisteredFile] = []
    first_path: dict[str, str] = {}
    for f in files:
        if f.sha256 in first_path:
            out.append(RegisteredFile(f, 0, duplicate_of=first_path[f.sha256]))
            continue
        known = _known(con, domain, f.sha256)
        if known is not None and known["partition_date"] != f.partition_date:
            out.append(RegisteredFile(f, known["version"], duplicate_of=known["file_path"]))
            continue
        first_path[f.sha256] = str(f.path)
        if known is not None:
            out.append(RegisteredFile(f, known["version"]))
            continue
        version = 1 + int(
            scalar(
                con,
                "SELECT coalesce(max(version), 0) FROM file_versions "
                "WHERE domain = ? AND partition_date = ? AND file_name = ?",
                [domain, f.partition_date, f.path.name],
            )
        )
        insert_new_rows(
            con,
            "file_versions",
            pl.DataFrame(
                {
                    "domain": [domain],
                    "file_sha256": [f.sha256],
                    "partition_date": [f.partition_date],
                    "file_name": [f.path.name],
                    "file_path": [str(f.path)],
                    "version": [version],
                    "size_bytes": [f.size_bytes],
                    "arrived_at": [f.arrived_at],
                    "first_seen_at": [now],
                    "run_id": [run_id],
                }
            ),
        )
        out.append(RegisteredFile(f, version))
    return out


_KNOWN_CASES = (
    "(SELECT case_id, partition_date FROM accepted_cases WHERE domain = ? "
    " UNION ALL SELECT case_id, partition_date FROM decisions WHERE domain = ?) AS known "
    "WHERE partition_date NOT IN (SELECT unnest(?::DATE[]))"
)
# Stored ids that may not be canonical: non-ASCII (bytes != characters) or with whitespace or
# a control character at either end. Canonical ASCII ids are never re-normalised, so the
# check stays one cheap scan however long the history.
_MAYBE_NOT_CANONICAL = (
    "(strlen(case_id) <> length(case_id) OR ord(left(case_id, 1)) <= 32 "
    "OR ord(right(case_id, 1)) <= 32)"
)


def cases_accepted_elsewhere(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    case_ids: pl.Series,
    days: Sequence[date],
) -> pl.DataFrame:
    """Of `case_ids` (canonical), those already accepted or decided in a partition outside `days`.

    Returns `case_id`, the `partition_date` that holds it (the earliest, if several) and
    `stored_id`, the id as stored there. Stored ids are compared by their canonical form
    (`quality.case_ids.canonical_case_ids`): an id stored before ids were made canonical
    (`'LC-1 '`, full-width `ＬＣ-1`) still holds `LC-1`, so the look-alike is never a second
    application. History is read, never rewritten.
    """
    incoming = pl.DataFrame({"case_id": case_ids.cast(pl.String)}).unique()
    params = [domain, domain, list(days)]
    con.register("incoming_case_ids", incoming)
    try:
        exact = query_frame(
            con,
            f"SELECT case_id, partition_date, case_id AS stored_id FROM {_KNOWN_CASES} "
            "AND case_id IN (SELECT case_id FROM incoming_case_ids)",
            params,
        )
        legacy = query_frame(
            con,
            f"SELECT case_id AS stored_id, partition_date FROM {_KNOWN_CASES} "
            f"AND {_MAYBE_NOT_CANONICAL}",
            params,
        )
    finally:
        con.unregister("incoming_case_ids")
    renamed = legacy.with_columns(case_id=canonical_case_ids(legacy["stored_id"])).join(
        incoming, on="case_id", how="semi"
    )
    both = pl.concat(
        [exact, renamed.select("case_id", "partition_date", "stored_id")], how="vertical_relaxed"
    )
    return (
        both.sort("partition_date", "stored_id")
        .group_by("case_id", maintain_order=True)
        .first()
        .sort("case_id")
    )


def record_accepted_cases(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    accepted: pl.DataFrame,
    case_id: str,
    days: Sequence[date],
    run_id: str,
) -> None:
    """Replace the partitions' accepted case ids (so a re-run moves nothing elsewhere)."""
    frame = accepted.select(
        pl.lit(domain).alias("domain"),
        "partition_date",
        pl.col(case_id).cast(pl.String).alias("case_id"),
        pl.col("_source_sha256").alias("file_sha256"),
        pl.col("_source_row").alias("row_number"),
        pl.lit(run_id).alias("run_id"),
    )
    replace_partition_slice(con, "accepted_cases", frame, domain, days)


def record_contract(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    contract: ContractConfig,
    digest: str,
    run_id: str,
    now: datetime,
) -> bool:
    """Store the contract version once; refuse a changed contract reusing a version number.

    Returns whether this digest was new.
    """
    other = scalar(
        con,
        "SELECT any_value(contract_digest) FROM schema_versions "
        "WHERE domain = ? AND contract_version = ? AND contract_digest <> ?",
        [domain, contract.version, digest],
    )
    if other is not None:
        raise ContractVersionConflict(
            f"{domain}: contract version {contract.version} was recorded with digest "
            f"{str(other)[:12]}, but the declared contract now digests to {digest[:12]}; "
            "a changed contract needs a new version number"
        )
    text = json.dumps(contract.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    row = pl.DataFrame(
        {
            "domain": [domain],
            "contract_version": [contract.version],
            "contract_digest": [digest],
            "contract_json": [text],
            "first_used_at": [now],
            "run_id": [run_id],
        },
        schema_overrides={"contract_version": pl.Int32},
    )
    return insert_new_rows(con, "schema_versions", row) == 1


def record_listings(
    con: duckdb.DuckDBPyConnection,
    domain: str,
    listings: Sequence[DayListing],
    folder_of: dict[date, str],
    run_id: str,
    now: datetime,
) -> None:
    """Replace the days' listing counts and refused entries (`landing_listings`, `_refusals`).

    What a run saw in each folder is what the `files_balance` check holds the file accounting
    (`input_files`) against.
    """
    days = [listing.day for listing in listings]
    counts = pl.DataFrame(
        {
            "domain": [domain] * len(listings),
            "partition_date": days,
            "folder": [folder_of[d] for d in days],
            "files_seen": [listing.seen for listing in listings],
            "run_id": [run_id] * len(listings),
            "listed_at": [now] * len(listings),
        },
        schema_overrides={"partition_date": pl.Date, "files_seen": pl.Int64},
    )
    refused = [r for listing in listings for r in listing.refused]
    refusals = pl.DataFrame(
        {
            "domain": [domain] * len(refused),
            "partition_date": [r.partition_date for r in refused],
            "file_path": [str(r.path) for r in refused],
            "reason": [r.reason for r in refused],
            "message": [r.message for r in refused],
            "size_bytes": [r.size_bytes for r in refused],
            "arrived_at": [r.arrived_at for r in refused],
            "run_id": [run_id] * len(refused),
            "listed_at": [now] * len(refused),
        },
        schema={
            "domain": pl.String,
            "partition_date": pl.Date,
            "file_path": pl.String,
            "reason": pl.String,
            "message": pl.String,
            "size_bytes": pl.Int64,
            "arrived_at": pl.Datetime("us", "UTC"),
            "run_id": pl.String,
            "listed_at": pl.Datetime("us", "UTC"),
        },
    )
    replace_partition_slice(con, "landing_listings", counts, domain, days)
    replace_partition_slice(con, "landing_refusals", refusals, domain, days)


def files_balance(
    con: duckdb.DuckDBPyConnection, domain: str, days: Sequence[date]
) -> pl.DataFrame:
    """Per listed day: files seen, files accounted in `input_files`, files refused, and whether
    seen = accounted + refused (a day that ran but was never listed shows as unbalanced)."""
    return query_frame(
        con,
        "WITH d AS (SELECT unnest(?::DATE[]) AS partition_date), "
        "seen AS (SELECT partition_date, sum(files_seen) AS files_seen FROM landing_listings "
        "  WHERE domain = ? GROUP BY ALL), "
        "taken AS (SELECT partition_date, count(*) AS files_ingested FROM input_files "
        "  WHERE domain = ? GROUP BY ALL), "
        "refused AS (SELECT partition_date, count(*) AS files_refused FROM landing_refusals "
        "  WHERE domain = ? GROUP BY ALL) "
        "SELECT d.partition_date, seen.files_seen, "
        "  coalesce(taken.files_ingested, 0) AS files_ingested, "
        "  coalesce(refused.files_refused, 0) AS files_refused, "
        "  coalesce(seen.files_seen = coalesce(taken.files_ingested, 0) "
        "    + coalesce(refused.files_refused, 0), false) AS balanced "
        "FROM d LEFT JOIN seen USING (partition_date) LEFT JOIN taken USING (partition_date) "
        "LEFT JOIN refused USING (partition_date) ORDER BY d.partition_date",
        [list(days), domain, domain, domain],
    )

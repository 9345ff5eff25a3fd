"""Later outcomes (e.g. repayment status) linked to the decisions they follow.

Outcome files land in `<landing>/<outcomes_subdir>/` with the case id and the label column the
domain declares (for credit, `loan_status`), optionally an `observed_on` date. Each file is
recorded once per case (keyed by the file's SHA-256), so re-reading the folder is idempotent; a
row whose case was never executed is kept with `linked = false` rather than dropped.

Memory is bounded by the slice, not the file: a file is parsed `slice_rows` rows at a time
(`hitl_gate.ingest.csv_slices`, beside its bytes only one slice is parsed at once), and each
slice is its own `INSERT` (plain, `OR IGNORE` only where a key of it is stored: `insert_slice`),
with the file's constants bound as parameters and `linked` found by DuckDB joining a copy of
the domain's executed ids made once per ingest, under the seal's DuckDB memory limit. A run
killed between slices leaves part of a file recorded; the next run inserts the rest (the
primary key ignores what is there). A file already fully recorded is read, not re-inserted.

A file is read once before anything of it is inserted: a line the reader cannot read rejects
the whole file (nothing of it recorded), and a row without a case id or an outcome is
reported (file, rows, column) instead of vanishing: rows read = rows recorded + rows rejected.
That read also finds the date that sets `observed_on`'s format and, when the file is one
slice, keeps it for the insert: such a file is parsed once, a longer one twice.

A case id is recorded once per file, from its first row; a later row repeating it (in any
slice, whatever its outcome) is rejected and reported the same way. Repeats are found at the
insert, not in the first read, which would need every id of the file at once: each slice is
deduplicated in itself, then joined to the rows this file already has in `outcomes`.
Rejected rows do not go to the `quarantine` table: that table accounts for the cases of a
partition (`rows_quarantined` in each day's balance); an outcome row belongs to no partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from hitl_gate.audit.seal import memory_limited
from hitl_gate.core.database import insert_new_keys, query_frame, registered, scalar
from hitl_gate.core.domain import DomainConfig
from hitl_gate.core.settings import DEFAULT_SLICE_ROWS
from hitl_gate.ingest.csv_slices import CsvInSlices, csv_slices, header, more_lines_than

OBSERVED_ON = "observed_on"
SHOWN_ROWS = 5  # row numbers a rejection message lists before "..."


@dataclass(frozen=True)
class OutcomeFile:
    """One outcome file to be read in slices: its bytes, digest, columns and default day."""

    source: CsvInSlices
    sha256: str
    case_id: str
    label: str
    file_day: date  # `observed_on` of a row without a readable one: the file's date

    @property
    def dated(self) -> bool:
        """Whether the file has an `observed_on` column."""
        return OBSERVED_ON in self.source.wanted


def open_outcome_file(path: Path, domain: DomainConfig) -> OutcomeFile:
    """The file read once (its bytes, hashed here), its header checked.

    Raises ValueError naming the file and the missing column when the file lacks them.
    """
    # The bytes, not the path: Polars reads a path string as a glob pattern (`x[1].csv`).
    data = path.read_bytes()
    label = domain.model.label.column
    names = header(data, ",")
    missing = [c for c in (domain.case_id, label) if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    wanted = [domain.case_id, label] + ([OBSERVED_ON] if OBSERVED_ON in names else [])
    return OutcomeFile(
        CsvInSlices(data, "csv", str(path), ",", wanted, {}),
        hashlib.sha256(data).hexdigest(),
        domain.case_id,
        label,
        datetime.fromtimestamp(path.stat().st_mtime, UTC).date(),
    )


def shaped(raw: pl.DataFrame, file: OutcomeFile, date_sample: str | None) -> pl.DataFrame:
    """A slice as read (`csv_slices`) as (case_id, outcome, observed_on, source_row).

    `date_sample` is the file's first `observed_on` value: Polars takes a date format from the
    first value it parses, so the slice is parsed with that value in front (then dropped), as
    the whole file's column would be."""
    observed: pl.Expr = pl.lit(file.file_day)
    if file.dated:
        column = pl.concat([pl.Series([date_sample], dtype=pl.String), raw[OBSERVED_ON]])
        parsed = column.str.to_date(strict=False).slice(1).fill_null(file.file_day)
        observed = pl.lit(parsed)
    return raw.select(
        pl.col(file.case_id).alias("case_id"),
        pl.col(file.label).alias("outcome"),
        observed.alias("observed_on"),
        pl.col("_source_row").alias("source_row"),
    )


def outcome_slices(
    file: OutcomeFile, slice_rows: int, date_sample: str | None
) -> Iterator[pl.DataFrame]:
    """The file's rows, at most `slice_rows` a frame, as `shaped` gives them; rows lacking a
    case id or an outcome included (`accepted` tells them)."""
    for raw in csv_slices(file.source, False, slice_rows):
        yield shaped(raw, file, date_sample)


def accepted(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows that can be recorded: with a case id and an outcome."""
    return rows.filter(pl.col("case_id").is_not_null() & pl.col("outcome").is_not_null())


def first_date(values: pl.Series) -> str | None:
    """The first of `values` that Polars reads as a date (None without one): Polars takes the
    whole column's format from it, skipping values before it that fit none."""
    read = values.str.to_date(strict=False).is_not_null()
    if not read.any():
        return None
    sample: str = values.filter(read)[0]
    return sample


@dataclass
class FileCheck:
    """What the first read of a file found: rows recorded and rejected, per empty column; the
    date that sets `observed_on`'s format; and, when the file is one slice, that slice, so
    that the insert does not parse the file again."""

    accepted: int = 0
    rejected: int = 0
    empty: dict[str, list[int]] = field(default_factory=dict)  # column -> first rows
    empty_count: dict[str, int] = field(default_factory=dict)
    date_sample: str | None = None
    whole: pl.DataFrame | None = None  # the file's only slice, as read
    case_id: str = "case_id"  # the file's name for it
    repeated: list[int] = field(default_factory=list)  # first rows repeating a case id
    repeated_count: int = 0

    def add(self, raw: pl.DataFrame, columns: list[str]) -> None:
        """Count a slice as read; `columns`: those a row needs a value in."""
        ok = raw.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns)).height
        self.accepted += ok
        self.rejected += raw.height - ok
        for name in columns:
            empty = raw.filter(pl.col(name).is_null())["_source_row"]
            if empty.len():
                shown = self.empty.setdefault(name, [])
                shown.extend(empty.head(SHOWN_ROWS - len(shown)).to_list())
                self.empty_count[name] = self.empty_count.get(name, 0) + empty.len()

    def add_repeats(self, rows: pl.Series) -> None:
        """Count rows (`source_row`, in the file's order) whose case id an earlier row of the
        file has: found only at the insert (module docstring), rejected, not recorded."""
        self.accepted -= rows.len()
        self.rejected += rows.len()
        self.repeated_count += rows.len()
        self.repeated.extend(rows.head(SHOWN_ROWS - len(self.repeated)).to_list())

    def message(self, name: str) -> str | None:
        """One line naming the file, the rows and the columns of what was rejected, if any."""
        if not self.rejected:
            return None
        parts = []
        for column, rows in self.empty.items():
            count = self.empty_count[column]
            listed = ", ".join(map(str, rows)) + (", ..." if count > len(rows) else "")
            parts.append(f"column {column!r} empty in {count} row(s) (rows {listed})")
        if self.repeated_count:
            count = self.repeated_count
            listed = ", ".join(map(str, self.repeated)) + (", ..." if count > SHOWN_ROWS else "")
            parts.append(
                f"column {self.case_id!r} repeats an earlier row's value in {count} row(s) "
                f"(rows {listed}; the earlier row recorded)"
            )
        return (
            f"{name}: {self.rejected} row(s) rejected, not recorded "
            f"({self.accepted} recorded): {'; '.join(parts)}"
        )


def check_file(file: OutcomeFile, slice_rows: int) -> FileCheck:
    """Read the whole file once, a slice at a time, before anything of it is inserted: count
    its rows, find its first date, keep the slice when it is the only one.

    Raises a Polars error on a line the reader cannot read (nothing of the file recorded)."""
    check = FileCheck(case_id=file.case_id)
    one_slice = not more_lines_than(file.source.data, slice_rows)
    for raw in csv_slices(file.source, False, slice_rows):
        check.add(raw, [file.case_id, file.label])
        if file.dated and check.date_sample is None:
            check.date_sample = first_date(raw[OBSERVED_ON])
        if one_slice:
            check.whole = raw
    return check


@dataclass
class ExecutedCases:
    """The domain's executed case ids, copied once per ingest into a temporary table that each
    slice's `linked` joins: joined to `executions` itself, every slice scanned (and decoded)
    all of the domain's executions again, n scans for a file of n slices. The copy is built at
    the first insert of an ingest (a run whose files are all recorded pays nothing) and
    dropped at its end; it grows with history, so it is DuckDB's (under the ingest's memory
    limit, spilled to disk past it), not a Python set."""

    con: duckdb.DuckDBPyConnection
    domain: str
    built: bool = False

    def table(self) -> str:
        """The table's name, built if it is not yet."""
        if not self.built:
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {_EXECUTED} AS "
                "SELECT case_id FROM executions WHERE domain = ?",
                [self.domain],
            )
            self.built = True
        return _EXECUTED

    def drop(self) -> None:
        """Drop the table if this ingest built it."""
        if self.built:
            self.con.execute(f"DROP TABLE IF EXISTS temp.{_EXECUTED}")
            self.built = False


_EXECUTED = "outcome_executed"
_SELECT = f"""
SELECT $domain AS domain, s.case_id, s.outcome, s.observed_on, $file AS source_file,
       $sha AS source_sha256, s.source_row, e.case_id IS NOT NULL AS linked,
       $run AS run_id, $at AS recorded_at
FROM outcome_slice s
LEFT JOIN {_EXECUTED} e ON e.case_id = s.case_id
"""
# The slice's rows whose case id is recorded from the same file at another row: an earlier
# slice's (or, after a run killed mid-file, the row this file's first run recorded).
_RECORDED_ELSEWHERE = """
SELECT s.source_row FROM outcome_slice s
JOIN outcomes o ON o.case_id = s.case_id
WHERE o.domain = ? AND o.source_sha256 = ? AND o.source_row <> s.source_row
ORDER BY s.source_row
"""


def insert_slices(
    executed: ExecutedCases,
    file: OutcomeFile,
    slices: Iterator[pl.DataFrame],
    run_id: str,
    recorded_at: datetime,
    check: FileCheck,
) -> int:
    """Insert each slice's accepted rows, one statement (and transaction) a slice; return how
    many were new. `executions` has one row per (domain, case_id), so the join adds none.

    A case id is recorded once per file (the primary key), from its first row: a later row
    with it, in the same slice or a later one, is counted in `check` as rejected (and named
    in its message) instead of being dropped silently by the key."""
    con = executed.con
    added = 0
    params = {
        "domain": executed.domain,
        "file": file.source.name,
        "sha": file.sha256,
        "run": run_id,
        "at": recorded_at,
    }
    key = [executed.domain, file.sha256]
    for rows in slices:
        kept = accepted(rows)
        if not kept.height:
            continue
        first = pl.col("case_id").is_first_distinct()
        again = kept.filter(~first)["source_row"]
        kept = kept.filter(first)
        executed.table()
        with registered(con, "outcome_slice", kept.to_arrow()):
            elsewhere = query_frame(con, _RECORDED_ELSEWHERE, key)["source_row"]
            added += insert_slice(con, params, stored=elsewhere.len() > 0)
        check.add_repeats(pl.concat([again, elsewhere.cast(pl.Int64)]).sort())
    return added


def insert_slice(con: duckdb.DuckDBPyConnection, params: dict[str, object], stored: bool) -> int:
    """Insert `outcome_slice`'s rows whose key is new; return how many (`insert_new_keys`).

    A plain `INSERT` first unless a key of the slice is known to be `stored`: a slice of a new
    file stores only new keys; a run killed mid-file recorded part of the slice. Auto-commit
    only (a statement a slice, as `ingest_outcomes` runs)."""
    return insert_new_keys(con, "outcomes", _SELECT, params, plain_first=not stored)


def record_outcome_file(
    executed: ExecutedCases,
    domain: DomainConfig,
    path: Path,
    run_id: str,
    slice_rows: int,
) -> tuple[int, str | None]:
    """Record one file in slices; return (new rows, the message on its rejected rows).

    The file is parsed once when it is one slice (the check keeps it), twice otherwise.
    Raises ValueError or a Polars error (nothing of the file recorded) on a file that cannot
    be read."""
    file = open_outcome_file(path, domain)
    check = check_file(file, slice_rows)
    recorded = scalar(
        executed.con,
        "SELECT count(*) FROM outcomes WHERE domain = ? AND source_sha256 = ?",
        [domain.name, file.sha256],
    )
    # All there: later runs pay the read, not the inserts. A file repeating a case id records
    # fewer rows than it has accepted ones, so it is inserted again (nothing new), which
    # finds and reports its repeats again.
    if recorded == check.accepted:
        return 0, check.message(file.source.name)
    if check.whole is not None:
        slices: Iterator[pl.DataFrame] = iter([shaped(check.whole, file, check.date_sample)])
        check.whole = None  # the slice is the iterator's alone: freed once inserted
    else:
        slices = outcome_slices(file, slice_rows, check.date_sample)
    added = insert_slices(executed, file, slices, run_id, datetime.now(UTC), check)
    return added, check.message(file.source.name)


@contextmanager
def closing_table(executed: ExecutedCases) -> Iterator[ExecutedCases]:
    """`executed`, its table dropped when the block ends, however it ends."""
    try:
        yield executed
    finally:
        executed.drop()


def ingest_outcomes(
    con: duckdb.DuckDBPyConnection,
    domain: DomainConfig,
    folder: Path,
    run_id: str,
    *,
    memory_limit: str | None = None,
    slice_rows: int = DEFAULT_SLICE_ROWS,
) -> tuple[int, list[str]]:
    """Record every outcome file under `folder`, `slice_rows` rows at a time, under DuckDB's
    `memory_limit`; return (new rows, per-file errors: files skipped, rows rejected)."""
    errors: list[str] = []
    added = 0
    executed = ExecutedCases(con, domain.name)
    with memory_limited(con, memory_limit), closing_table(executed):
        for path in sorted(folder.glob("*.csv")) if folder.exists() else []:
            try:
                new, rejected = record_outcome_file(executed, domain, path, run_id, slice_rows)
            except ValueError as exc:  # names the file
                errors.append(str(exc))
                continue
            except pl.exceptions.PolarsError as exc:
                errors.append(f"{path}: {exc}")
                continue
            added += new
            if rejected:
                errors.append(rejected)
    return added, errors

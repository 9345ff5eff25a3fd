"""Landing-zone ingestion: find a day's files, read them and hold them to the data contract.

Generic over domains: the contract and the case id come from the domain declaration. Every row
read ends up either accepted or quarantined with its reasons, and every file is accounted for,
so `rows_read == rows_accepted + rows_quarantined` holds per file and per batch. Bad data never
raises: a file that cannot be used is quarantined whole with one entry naming the problem.
Columns a file carries beyond the contract are ignored and do not affect the file's status.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Protocol

import polars as pl

from hitl_gate.core.domain import DEFAULT_CASE_ID_PATTERN, ContractConfig
from hitl_gate.core.settings import DEFAULT_MAX_GUNZIP_BYTES, GUNZIP_CAP_ENV
from hitl_gate.core.slices import slice_ranges
from hitl_gate.ingest.csv_slices import CsvInSlices, csv_slices, header, more_lines_than
from hitl_gate.ingest.gunzip import GzipTooLarge, gunzip_capped
from hitl_gate.ingest.listing import (
    LandingFile,
    LandingRules,
    arrival_time,
    fingerprint,
    list_day_folder,
)
from hitl_gate.ingest.names import file_format, shown
from hitl_gate.ingest.strict_formats import collision_problem, jsonl_problem, normalise_line_ends
from hitl_gate.quality.contract import ROW_INDEX, polars_dtype, text_expr, validate_frame
from hitl_gate.quality.seen_values import SeenValues

__all__ = ["LandingFile", "arrival_time", "fingerprint"]

# Contract types whose canonical text the CSV reader parses itself (see `_read_csv`).
_CSV_NATIVE_TYPES = ("int", "float")
_CHUNK = 1 << 20
# Polars signals unreadable input with its own errors, OS errors, and (rarely) a Rust panic.
_READ_ERRORS = (pl.exceptions.PolarsError, OSError, ValueError, pl.exceptions.PanicException)
_VISIBLE = re.compile(rb"\S")

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "partition_date": pl.Date(),
    "file_path": pl.String(),
    "file_sha256": pl.String(),
    "row_number": pl.Int64(),
    "case_id": pl.String(),
    "column": pl.String(),
    "check": pl.String(),
    "value": pl.String(),
    "message": pl.String(),
}
FILES_SCHEMA: dict[str, pl.DataType] = {
    "partition_date": pl.Date(),
    "file_path": pl.String(),
    "file_sha256": pl.String(),
    "size_bytes": pl.Int64(),
    "arrived_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "error": pl.String(),
    "rows_read": pl.Int64(),
    "rows_accepted": pl.Int64(),
    "rows_quarantined": pl.Int64(),
}
# What identifies an accepted row (with its case id): enough to account for it and withhold it.
ACCEPTED_KEYS = ("partition_date", "_source_file", "_source_sha256", "_source_row")
PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "_source_file": pl.String(),
    "_source_sha256": pl.String(),
    "_source_row": pl.Int64(),
    "partition_date": pl.Date(),
}


@dataclass(frozen=True)
class IngestResult:
    """Accepted rows with provenance, one quarantine entry per failure, one row per file."""

    accepted: pl.DataFrame
    quarantine: pl.DataFrame
    files: pl.DataFrame


@dataclass(frozen=True)
class _Read:
    """A file as read: its contract columns and row numbers, or why it was rejected whole."""

    frame: pl.DataFrame | None
    rows_read: int
    check: str | None = None
    message: str | None = None
    column: str | None = None
    validated: bool = False  # its rows were validated as they were parsed (`take_csv`)


def discover_landing_files(
    landing_root: Path, subdir: str, day: date, rules: LandingRules | None = None
) -> list[LandingFile]:
    """The day's complete data files, fingerprinted on discovery (see `list_day_folder`).

    Files under landing_root/subdir/<YYYY-MM-DD>/, by name; what is refused (hidden, temporary,
    unsupported, incomplete) is in `list_day_folder(...).refused`.
    """
    folder = landing_root / subdir / day.isoformat()
    return list_day_folder(folder, day, rules or LandingRules()).files


def _is_utf8(data: bytes) -> bool:
    """Whether the bytes decode as UTF-8, checked in chunks (no second copy of a big file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(view), _CHUNK):
            decoder.decode(view[start : start + _CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _is_blank(data: bytes) -> bool:
    """Whether the bytes hold nothing but whitespace (stops at the first visible byte)."""
    return _VISIBLE.search(data) is None


def _wide_encoding(data: bytes) -> str | None:
    """Why the start of a text file is UTF-16/32 or binary rather than UTF-8, if it is.

    Such bytes can still decode as UTF-8 (ASCII interleaved with NULs), so they would otherwise
    surface as a baffling 'missing columns' error instead of the real cause.
    """
    head = data[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it starts with a UTF-16 or UTF-32 byte-order mark"
    if b"\x00" in head:
        return "it holds NUL bytes: binary data or UTF-16/32 text"
    return None


def _lossy_csv_rows(data: bytes, separator: str) -> int:
    """Data rows of a CSV that is not valid UTF-8, for the accounting of its rejection."""
    try:
        raw = pl.read_csv(data, infer_schema=False, encoding="utf8-lossy", separator=separator)
    except _READ_ERRORS:
        return 0
    return raw.filter(~pl.all_horizontal(pl.all().is_null())).height


def _native_types(contract: ContractConfig) -> dict[str, pl.DataType]:
    """The contract's int and float columns, with the types the CSV reader parses them to."""
    return {
        name: polars_dtype(column)
        for name, column in contract.columns.items()
        if column.type in _CSV_NATIVE_TYPES
    }


def _read_csv(data: bytes, contract: ContractConfig, separator: str) -> pl.DataFrame:
    """A CSV file with int and float contract columns parsed by the reader, the rest as text.

    The CSV reader parses canonical numbers exactly as `parse_series` would, at a fraction of
    the cost of text columns; datetimes, dates and booleans have coercion rules of ours and
    stay text. When any value does not parse (padding, '36.0', 'n/a'), the file is read again
    all as text, so validation still names the row, column and value of every bad cell.
    """
    native = _native_types(contract)
    options = {"infer_schema": False, "encoding": "utf8", "separator": separator}
    try:
        return pl.read_csv(data, schema_overrides=native, **options)  # type: ignore[arg-type]
    except _READ_ERRORS:
        return pl.read_csv(data, **options)  # type: ignore[arg-type]


def _read_raw(
    data: bytes, fmt: str, contract: ContractConfig
) -> tuple[pl.DataFrame, list[str], int]:
    """The file's contract columns, the columns it has, and its row count (raises on bad input)."""
    wanted = list(contract.columns)
    if fmt == "parquet":
        present = list(pl.read_parquet_schema(io.BytesIO(data)))
        cols = [c for c in wanted if c in present]
        if len(cols) < len(wanted):
            rows = pl.scan_parquet(io.BytesIO(data)).select(pl.len()).collect().item()
            return pl.DataFrame(), present, rows
        frame = pl.read_parquet(io.BytesIO(data), columns=cols)
        return frame, present, frame.height
    if fmt == "jsonl":
        inferred = pl.read_ndjson(data, infer_schema_length=None).schema
        present = list(inferred)
        cols = [c for c in wanted if c in present] or present[:1]
        # Scalars are read as text and parsed like CSV; nested values keep their type so the
        # column check can reject them rather than parse their JSON text as a value.
        schema = {c: inferred[c] if inferred[c].is_nested() else pl.String() for c in cols}
        frame = pl.read_ndjson(data, schema=schema)
        return frame.select(c for c in wanted if c in cols), present, frame.height
    frame = _read_csv(data, contract, "\t" if fmt.startswith("tsv") else ",")
    # A blank line (or one of only separators) holds no case: it is not a data row.
    frame = frame.with_row_index("_source_row", offset=1)
    frame = frame.filter(~pl.all_horizontal(pl.exclude("_source_row").is_null()))
    return frame, [c for c in frame.columns if c != "_source_row"], frame.height


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_file(
    file: LandingFile,
    contract: ContractConfig,
    max_gunzip_bytes: int,
    slice_rows: int | None = None,
) -> _Read | CsvInSlices:
    """Read one landing file, or say why the whole file is rejected.

    A CSV or TSV file of more than `slice_rows` rows comes back unparsed (`CsvInSlices`), its
    header checked: it is parsed a slice at a time as it is validated.

    The bytes are read once; exactly those bytes are hashed and parsed. They must hash to what
    the file was registered with: a file that changed since (still being written, or replaced)
    yields no rows here, and its new content is a new file to the registry, taken by the next
    run of the day. Hashing runs beside parsing (hashlib releases the GIL), so the check costs
    CPU but little wall time; a mismatch discards whatever was parsed.
    """
    name = shown(file.path)
    if file.size_bytes == 0:
        return _Read(None, 0, "empty_file", f"{name}: file is empty")
    try:
        with file.path.open("rb") as handle:
            landed = handle.read()
    except OSError as exc:
        return _Read(None, 0, "file_unreadable", f"{name}: cannot open file: {exc.strerror}")
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_sha256_hex, landed)
        parsed = _parse_file(landed, file, contract, max_gunzip_bytes, slice_rows)
        found = digest.result()
    if found != file.sha256:
        return _Read(
            None,
            0,
            "file_changed",
            f"{name}: bytes changed after the file was registered (sha256 {file.sha256[:12]} "
            f"then, {found[:12]} now): read again once it is complete",
        )
    return parsed


def _decoded(data: bytes, fmt: str, name: str, max_gunzip_bytes: int) -> bytes | _Read:
    """Text bytes ready for the reader: gunzipped (at most `max_gunzip_bytes`), line ends as LF
    (CR-only or mixed)."""
    if fmt.endswith(".gz"):
        try:
            data = gunzip_capped(data, max_gunzip_bytes)
        except GzipTooLarge as exc:
            return _Read(
                None,
                0,
                "decompressed_too_large",
                f"{name}: gzip data {exc} ({GUNZIP_CAP_ENV}); refused unread, a possible "
                "decompression bomb (split the day into smaller files or raise the cap)",
            )
        except (OSError, EOFError, zlib.error) as exc:
            return _Read(None, 0, "file_unreadable", f"{name}: not valid gzip data: {exc}")
    return normalise_line_ends(data)


def _parse_file(
    landed: bytes,
    file: LandingFile,
    contract: ContractConfig,
    max_gunzip_bytes: int,
    slice_rows: int | None = None,
) -> _Read | CsvInSlices:
    """A file's bytes parsed and held to the contract's columns, or why the file is rejected
    (a text file of more than `slice_rows` rows: left to be parsed in slices)."""
    name = shown(file.path)
    fmt = file_format(file.path.name) or "csv"
    data = landed if fmt == "parquet" else _decoded(landed, fmt, name, max_gunzip_bytes)
    if isinstance(data, _Read):
        return data
    if fmt != "parquet":
        if _is_blank(data):
            return _Read(None, 0, "empty_file", f"{name}: file holds only whitespace")
        wide = _wide_encoding(data)
        if wide:
            return _Read(None, 0, "encoding", f"{name}: file is not valid UTF-8 ({wide})")
    if fmt == "jsonl":
        problem = jsonl_problem(data)
        if problem is not None:
            message = f"{name}: {problem.message}"
            return _Read(None, problem.rows, problem.check, message, problem.column)
    text = fmt.startswith(("csv", "tsv"))
    if text and slice_rows is not None and more_lines_than(data, slice_rows):
        sliced = _in_slices(data, fmt, name, contract)
        if sliced is not None:
            return sliced
    return _parse_whole(data, fmt, name, contract)


def _in_slices(data: bytes, fmt: str, name: str, contract: ContractConfig) -> CsvInSlices | None:
    """The text file to parse in slices, if its header can be read and meets the contract
    (otherwise it is read whole, which finds the exact rejection and its row count)."""
    separator = "\t" if fmt.startswith("tsv") else ","
    wanted = list(contract.columns)
    try:
        present = header(data, separator)
    except _READ_ERRORS:
        return None
    columns = pl.DataFrame(schema=dict.fromkeys(present, pl.String()))
    if _check_columns(name, columns, present, 1, wanted).frame is None:
        return None
    return CsvInSlices(data, fmt, name, separator, wanted, _native_types(contract))


def _parse_whole(data: bytes, fmt: str, name: str, contract: ContractConfig) -> _Read:
    """Decoded bytes parsed whole and held to the contract's columns, or why they are rejected."""
    wanted = list(contract.columns)
    try:
        frame, present, rows = _read_raw(data, fmt, contract)
    except pl.exceptions.NoDataError:
        return _Read(None, 0, "empty_file", f"{name}: file is empty")
    except _READ_ERRORS as exc:
        if fmt != "parquet" and not _is_utf8(data):
            is_csv = fmt in ("csv", "tsv", "csv.gz", "tsv.gz")
            sep = "\t" if fmt.startswith("tsv") else ","
            rows = _lossy_csv_rows(data, sep) if is_csv else 0
            return _Read(None, rows, "encoding", f"{name}: file is not valid UTF-8")
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return _Read(None, 0, "file_unreadable", f"{name}: cannot read file: {shown(reason)}")
    return _check_columns(name, frame, present, rows, wanted)


def _check_columns(
    name: str, frame: pl.DataFrame, present: list[str], rows: int, wanted: list[str]
) -> _Read:
    """Reject files whose columns cannot meet the contract; otherwise keep the contract columns.

    `name` is the file as shown in messages (escaped).
    """
    doubled = sorted({c.rsplit("_duplicated_", 1)[0] for c in present if "_duplicated_" in c})
    doubled = [c for c in doubled if c in wanted]
    if doubled:
        listed = ", ".join(shown(c) for c in doubled)
        return _Read(
            None,
            rows,
            "duplicate_columns",
            f"{name}: header row, repeated columns: {listed}",
            doubled[0],
        )
    ambiguous = collision_problem([c for c in present if "_duplicated_" not in c], rows)
    if ambiguous is not None:
        message = f"{name}: {ambiguous.message}"
        return _Read(None, rows, ambiguous.check, message, ambiguous.column)
    missing = [c for c in wanted if c not in present]
    if missing:
        return _Read(
            None, rows, "missing_columns", f"{name}: missing columns: {', '.join(missing)}"
        )
    if rows == 0:
        return _Read(None, 0, "empty_file", f"{name}: no data rows")
    schema = frame.schema  # Polars builds it anew on each access
    nested = [c for c in wanted if schema[c].is_nested() or schema[c] == pl.Object]
    if nested:
        message = f"{name}: non-scalar columns: {', '.join(nested)}"
        return _Read(None, rows, "column_types", message, nested[0])
    if "_source_row" not in frame.columns:
        frame = frame.with_row_index("_source_row", offset=1)
    return _Read(frame.select(pl.col("_source_row").cast(pl.Int64), *wanted), rows)


def _files_meta(files: list[LandingFile]) -> pl.DataFrame:
    """One row per input file, keyed by its position in the batch."""
    return pl.DataFrame(
        {
            "_file": list(range(len(files))),
            "partition_date": [f.partition_date for f in files],
            "file_path": [str(f.path) for f in files],
            "file_sha256": [f.sha256 for f in files],
            "size_bytes": [f.size_bytes for f in files],
            "arrived_at": [f.arrived_at.astimezone(UTC) for f in files],
        },
        schema={"_file": pl.Int64(), **{k: FILES_SCHEMA[k] for k in list(FILES_SCHEMA)[:5]}},
    )


def _future_failures(
    valid: pl.DataFrame, meta: pl.DataFrame, contract: ContractConfig
) -> pl.DataFrame:
    """Datetimes later than their file's arrival plus the contract's allowed clock skew."""
    skew = timedelta(hours=contract.max_future_skew_hours)
    limit = meta.select(
        "_file", _limit=pl.col("arrived_at").dt.replace_time_zone(None) + pl.lit(skew)
    )
    rows = valid.select("_file", "_source_row", "_case_id").join(
        limit, on="_file", how="left", maintain_order="left"
    )
    parts = []
    for name, column in contract.columns.items():
        if column.type != "datetime":
            continue
        late = valid[name] > rows["_limit"]
        if not late.any():
            continue
        shown = valid[name].dt.to_string("%Y-%m-%dT%H:%M:%S%.f")
        parts.append(
            rows.with_columns(value=shown)
            .filter(late)
            .select(
                "_file",
                "_source_row",
                "_case_id",
                column=pl.lit(name),
                check=pl.lit("future_time"),
                value="value",
                message=pl.format(
                    "'{}' is later than the file's arrival {} plus {} h of allowed skew",
                    "value",
                    pl.col("_limit") - pl.lit(skew),
                    pl.lit(contract.max_future_skew_hours),
                ),
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame()


def _mixed_columns(frames: list[pl.DataFrame], contract: ContractConfig) -> list[str]:
    """Contract columns whose type differs between the batch's files: those are read as text."""
    schemas = [f.schema for f in frames]  # Polars builds a schema anew on each access
    return [c for c in contract.columns if len({s[c] for s in schemas}) > 1]


def _empty_batch(contract: ContractConfig) -> pl.DataFrame:
    """A batch without any readable file: the columns a stack of files would have."""
    schema = {"_source_row": pl.Int64(), **dict.fromkeys(contract.columns, pl.String())}
    return pl.DataFrame(schema={**schema, "_file": pl.Int64(), "_case_id": pl.String()})


def _validated_empty_batch(
    contract: ContractConfig, case_id: str, id_pattern: str | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`_validate_file` of `_empty_batch`: what a day without a readable file validates to.

    The same frames for the same contract, case id and pattern (no rows: nothing but the
    columns and their types), so they are kept per process by the contract's JSON instead of
    typing 0 rows column by column again (about 20 ms of CPU, paid by every empty day)."""
    key = (contract.model_dump_json(), case_id, id_pattern)
    found = _EMPTY_VALIDATED.get(key)
    if found is None:
        if len(_EMPTY_VALIDATED) >= EMPTY_VALIDATED_LIMIT:
            _EMPTY_VALIDATED.clear()
        found = _validate_file(_empty_batch(contract), contract, case_id, {}, id_pattern)
        _EMPTY_VALIDATED[key] = found
    return found[0].clone(), found[1].clone()


# `_validated_empty_batch`'s frames by (contract JSON, case id, id pattern); a few per process
_EMPTY_VALIDATED: dict[tuple[str, str, str | None], tuple[pl.DataFrame, pl.DataFrame]] = {}
EMPTY_VALIDATED_LIMIT = 16


def _validate_file(
    frame: pl.DataFrame,
    contract: ContractConfig,
    case_id: str,
    earlier: dict[str, SeenValues],
    id_pattern: str | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Valid rows of one file's frame, and its failures located by file, row and case id."""
    valid, failures = validate_frame(frame, contract, case_id, earlier, id_pattern)
    located = frame.select(pl.col("_file", "_source_row", "_case_id").gather(failures[ROW_INDEX]))
    return valid, pl.concat([located, failures.drop(ROW_INDEX)], how="horizontal")


class AcceptedSink(Protocol):
    """Where `ingest_files` hands accepted rows as they are made (`AcceptedSpill`)."""

    def put(self, frame: pl.DataFrame) -> None:
        """Take a slice's accepted rows."""

    def expect(self, rows: int) -> None:
        """About `rows` more rows are coming (the next file's): make room for them now."""

    def mark(self) -> int:
        """Where the rows stand now, for `undo`."""

    def undo(self, mark: int) -> None:
        """Take back every row put since `mark`."""


@dataclass(frozen=True)
class _Mark:
    """How far `_DayRows` stood, to take back a file's slices (`_DayRows.undo`)."""

    parts: int
    earlier: dict[str, int]
    sink: int | None


@dataclass
class _DayRows:
    """What validating a day's slices made so far: accepted rows (or their keys, when they go
    to `sink`), failures, rows accepted per file, and the unique values seen."""

    meta: pl.DataFrame
    contract: ContractConfig
    case_id: str
    id_pattern: str | None
    sink: AcceptedSink | None
    earlier: dict[str, SeenValues] = field(default_factory=dict)
    kept: list[pl.DataFrame] = field(default_factory=list)
    failure_parts: list[pl.DataFrame] = field(default_factory=list)
    accepted_per_file: list[pl.DataFrame] = field(default_factory=list)

    def validate(self, frame: pl.DataFrame, file_number: int) -> None:
        """Validate one slice of file `file_number` and take what it gives."""
        numbered = frame.with_columns(
            _file=pl.lit(file_number, pl.Int64), _case_id=pl.col(self.case_id)
        )
        pattern = self.id_pattern
        self.take(*_validate_file(numbered, self.contract, self.case_id, self.earlier, pattern))

    def take(self, valid: pl.DataFrame, failures: pl.DataFrame) -> None:
        # One chunk per column: the reader's ~100 chunks per column beside the one-chunk
        # `_file` made every later whole-frame operation re-align (copy) the batch.
        valid = valid.rechunk()
        late = _future_failures(valid, self.meta, self.contract)
        if late.height:
            failures = pl.concat([failures, late], how="vertical_relaxed")
            late_rows = late.select("_file", "_source_row")
            valid = valid.join(
                late_rows, on=["_file", "_source_row"], how="anti", maintain_order="left"
            )
        self.failure_parts.append(failures)
        self.accepted_per_file.append(valid.group_by("_file").agg(rows_accepted=pl.len()))
        accepted = _accepted(valid, self.meta, self.contract)
        if self.sink is None:
            self.kept.append(accepted)
        else:
            self.sink.put(accepted)
            self.kept.append(accepted.select(self.case_id, *ACCEPTED_KEYS))

    def take_csv(self, file_number: int, source: CsvInSlices, slice_rows: int) -> _Read:
        """Parse and validate a long text file a slice at a time, as `_read_csv` reads it:
        numbers parsed by the reader, or, if any value is not one, every column as text.

        A slice the reader cannot parse takes back the file's earlier slices; a file that
        cannot be read in slices (at all, or no row) is read whole (`_parse_whole`: the same
        rejection, message and row count as ever), and the caller validates what that gives.
        """
        before = self.mark()
        for native in (True, False):
            rows = 0
            try:
                for frame in csv_slices(source, native, slice_rows):
                    rows += frame.height
                    self.validate(frame, file_number)
            except _READ_ERRORS:
                self.undo(before)
                continue
            if rows:
                return _Read(pl.DataFrame(), rows, validated=True)
            self.undo(before)
            break
        return _parse_whole(source.data, source.fmt, source.name, self.contract)

    def mark(self) -> _Mark:
        return _Mark(
            parts=len(self.kept),
            earlier={name: len(values) for name, values in self.earlier.items()},
            sink=self.sink.mark() if self.sink is not None else None,
        )

    def undo(self, mark: _Mark) -> None:
        """Back to `mark`: what the slices validated since made is dropped."""
        for parts in (self.kept, self.failure_parts, self.accepted_per_file):
            del parts[mark.parts :]
        for name in list(self.earlier):
            if name in mark.earlier:
                self.earlier[name].truncate(mark.earlier[name])
            else:
                del self.earlier[name]
        if self.sink is not None and mark.sink is not None:
            self.sink.undo(mark.sink)


def ingest_files(
    files: list[LandingFile],
    contract: ContractConfig,
    case_id: str,
    id_pattern: str | None = DEFAULT_CASE_ID_PATTERN,
    max_gunzip_bytes: int = DEFAULT_MAX_GUNZIP_BYTES,
    slice_rows: int | None = None,
    sink: AcceptedSink | None = None,
) -> IngestResult:
    """Read, type and validate a batch of landing files; case ids must be unique in the batch.

    A gzip file whose data would expand beyond `max_gunzip_bytes` is rejected whole, unread
    (`decompressed_too_large`).

    Case ids are made canonical and held to `id_pattern` (the domain's `case_id_pattern`) before
    they are compared, so uniqueness is that of the canonical id (quality/case_ids.py).

    Files are taken in the order given (discovery sorts by name), so of repeated case ids the
    first in that order is accepted and later ones are quarantined as `duplicate_case_id`.
    Files are validated one at a time and each file in slices of at most `slice_rows` rows
    (whole if None), each read frame released once validated, so the batch is never typed as
    one frame (the stacked batch and its copies were 12 GB of a 10M-case day); unique values
    seen in earlier slices carry over, which keeps the result the same as validating the
    stacked batch, whatever the slice size. A day of text files longer than one slice is also
    parsed a slice at a time (`csv_slices`), never held parsed whole.

    With `sink`, each slice's accepted rows are handed to it as they are made (the day's
    accepted rows are never held at once) and `IngestResult.accepted` holds only their keys
    (`ACCEPTED_KEYS` and the case id), for the accounting; without, it holds them all.
    `sink.expect` is told, before each further text file is read, about how many rows it holds
    (its size at the bytes per row of the files read so far), so that what the sink keeps can
    be written away before the file's frame joins it.
    """
    meta = _files_meta(files)
    # A day of text files is read a file at a time (one file's bytes and frame held, not the
    # day's): their columns are text or the reader's Int64/Float64, whose text form parses
    # back to the same values and shows the same text, so the other files' types change
    # nothing. Other formats are all read first, to read as text columns whose type differs
    # between files (`_mixed_columns`).
    streamed = all(_is_text_format(f) for f in files)
    reads: list[_Read | CsvInSlices | None] = [
        None if streamed else _read_file(f, contract, max_gunzip_bytes) for f in files
    ]
    frames = [r.frame for r in reads if isinstance(r, _Read) and r.frame is not None]
    mixed = _mixed_columns(frames, contract)
    del frames
    done: list[_Read] = []
    day = _DayRows(meta, contract, case_id, id_pattern, sink)
    in_slices = slice_rows if streamed else None
    bytes_read = rows_read = 0
    for i, file in enumerate(files):
        if sink is not None and streamed and rows_read:
            sink.expect(file.size_bytes * rows_read // max(bytes_read, 1))
        read = reads[i] or _read_file(file, contract, max_gunzip_bytes, in_slices)
        reads[i] = None
        if isinstance(read, CsvInSlices):
            read = day.take_csv(i, read, slice_rows or 1)
        bytes_read, rows_read = bytes_read + file.size_bytes, rows_read + read.rows_read
        if read.frame is None or read.validated:
            done.append(read)
            continue
        whole = read.frame.with_columns(text_expr(c, read.frame.schema[c]) for c in mixed)
        # The read frame is no longer needed: keep an empty one, the file was read.
        done.append(replace(read, frame=read.frame.clear()))
        del read
        for offset, length in slice_ranges(whole.height, slice_rows or max(whole.height, 1)):
            day.validate(whole.slice(offset, length), i)
        del whole
    if not day.kept:
        day.take(*_validated_empty_batch(contract, case_id, id_pattern))
    row_failures = pl.concat(day.failure_parts, how="vertical_relaxed")
    accepted = pl.concat(day.kept) if len(day.kept) > 1 else day.kept[0]
    return IngestResult(
        accepted=accepted,
        quarantine=_quarantine(row_failures, done, meta),
        files=_files_frame(done, pl.concat(day.accepted_per_file), row_failures, meta),
    )


def _is_text_format(file: LandingFile) -> bool:
    """Whether the file is read as CSV or TSV (gzipped or not; CSV when the name says nothing)."""
    return (file_format(file.path.name) or "csv").startswith(("csv", "tsv"))


def accepted_schema(contract: ContractConfig) -> pl.Schema:
    """Columns of `IngestResult.accepted`: the typed contract columns, then their provenance."""
    typed = {name: polars_dtype(column) for name, column in contract.columns.items()}
    return pl.Schema({**typed, **PROVENANCE_SCHEMA})


def _accepted(valid: pl.DataFrame, meta: pl.DataFrame, contract: ContractConfig) -> pl.DataFrame:
    """Contract columns in contract order, then where each row came from.

    File attributes are looked up by file number rather than joined: a join would copy every
    contract column of a million-row batch only to add three.
    """

    def from_file(column: str) -> pl.Expr:
        return pl.col("_file").replace_strict(
            meta["_file"], meta[column], return_dtype=meta.schema[column]
        )

    with_source = valid.with_columns(
        partition_date=from_file("partition_date"),
        _source_file=from_file("file_path"),
        _source_sha256=from_file("file_sha256"),
    )
    return with_source.select(pl.col(n).cast(t) for n, t in accepted_schema(contract).items())


def _quarantine(row_failures: pl.DataFrame, reads: list[_Read], meta: pl.DataFrame) -> pl.DataFrame:
    """Row failures with their file and row, then one entry per file rejected whole."""
    rows = row_failures.join(meta, on="_file", how="left", maintain_order="left").select(
        "_file",
        "partition_date",
        "file_path",
        "file_sha256",
        pl.col("_source_row").cast(pl.Int64).alias("row_number"),
        pl.col("_case_id").alias("case_id"),
        "column",
        "check",
        "value",
        message=pl.format("column '{}' row {}: {}", "column", "_source_row", "message"),
    )
    rejected = [i for i, r in enumerate(reads) if r.frame is None]
    whole = meta.filter(pl.col("_file").is_in(rejected)).select(
        "_file",
        "partition_date",
        "file_path",
        "file_sha256",
        row_number=pl.lit(None, pl.Int64),
        case_id=pl.lit(None, pl.String),
        column=pl.Series([reads[i].column for i in rejected], dtype=pl.String),
        check=pl.Series([reads[i].check for i in rejected], dtype=pl.String),
        value=pl.lit(None, pl.String),
        message=pl.Series([reads[i].message for i in rejected], dtype=pl.String),
    )
    ordered = pl.concat([whole, rows]).sort("_file", "row_number", maintain_order=True)
    return ordered.select(pl.col(name).cast(dtype) for name, dtype in QUARANTINE_SCHEMA.items())


def _files_frame(
    reads: list[_Read],
    accepted_per_slice: pl.DataFrame,
    row_failures: pl.DataFrame,
    meta: pl.DataFrame,
) -> pl.DataFrame:
    """Per-file accounting: status, first problem, and rows read, accepted and quarantined.

    `accepted_per_slice` has `_file` and `rows_accepted` per validated slice."""
    accepted = accepted_per_slice.group_by("_file").agg(pl.col("rows_accepted").sum())
    quarantined = (
        row_failures.select("_file", "_source_row").unique().group_by("_file").agg(rows_q=pl.len())
    )
    status = pl.DataFrame(
        {
            "_file": list(range(len(reads))),
            "status": ["accepted" if r.frame is not None else "rejected" for r in reads],
            "error": [r.message for r in reads],
            "rows_read": [r.rows_read for r in reads],
        },
        schema={"_file": pl.Int64, "status": pl.String, "error": pl.String, "rows_read": pl.Int64},
    )
    rejected = pl.col("status") == "rejected"
    return (
        meta.join(status, on="_file", how="left", maintain_order="left")
        .join(accepted, on="_file", how="left", maintain_order="left")
        .join(quarantined, on="_file", how="left", maintain_order="left")
        .with_columns(
            rows_accepted=pl.col("rows_accepted").fill_null(0),
            rows_quarantined=pl.when(rejected)
            .then("rows_read")
            .otherwise(pl.col("rows_q").fill_null(0)),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in FILES_SCHEMA.items())
    )


CROSS_PARTITION_CHECK = "duplicate_case_id_across_partitions"


def _stored_as(known: pl.DataFrame) -> pl.Expr:
    """`(stored there as '...')` when the id is held under another, non-canonical form."""
    if "stored_id" not in known.columns:
        return pl.lit("")
    differs = pl.col("stored_id").is_not_null() & (pl.col("stored_id") != pl.col("_id"))
    shown_id = pl.col("stored_id").map_elements(shown, return_dtype=pl.String)
    return (
        pl.when(differs)
        .then(pl.format(" (stored there as '{}', the same id once canonical)", shown_id))
        .otherwise(pl.lit(""))
    )


def withhold_known_cases(result: IngestResult, known: pl.DataFrame, case_id: str) -> IngestResult:
    """Move accepted rows whose case id another partition holds into quarantine.

    `known` has `case_id` (canonical text), the `partition_date` holding it and optionally the
    `stored_id` it is held under there. The file accounting is updated so rows read = accepted
    + quarantined still holds per file.
    """
    if known.height == 0 or result.accepted.height == 0:
        return result
    ids = pl.col(case_id).cast(pl.String)
    hits = result.accepted.with_columns(_id=ids).join(
        known.rename({"partition_date": "_held_in"}),
        left_on="_id",
        right_on="case_id",
        how="inner",
        maintain_order="left",
    )
    if hits.height == 0:
        return result
    entries = hits.select(
        "partition_date",
        pl.col("_source_file").alias("file_path"),
        pl.col("_source_sha256").alias("file_sha256"),
        pl.col("_source_row").alias("row_number"),
        pl.col("_id").alias("case_id"),
        column=pl.lit(case_id),
        check=pl.lit(CROSS_PARTITION_CHECK),
        value=pl.col("_id"),
        message=pl.format(
            "column '{}' row {}: '{}' was already accepted in partition {}{}",
            pl.lit(case_id),
            "_source_row",
            "_id",
            pl.col("_held_in").cast(pl.String),
            _stored_as(known),
        ),
    ).select(pl.col(n).cast(t) for n, t in QUARANTINE_SCHEMA.items())
    moved = hits.group_by("_source_sha256").agg(_n=pl.len())
    files = (
        result.files.join(
            moved,
            left_on="file_sha256",
            right_on="_source_sha256",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            rows_accepted=pl.col("rows_accepted") - pl.col("_n").fill_null(0),
            rows_quarantined=pl.col("rows_quarantined") + pl.col("_n").fill_null(0),
        )
        .drop("_n")
    )
    accepted = result.accepted.join(
        hits.select("_source_sha256", "_source_row"),
        on=["_source_sha256", "_source_row"],
        how="anti",
        maintain_order="left",
    )
    quarantine = pl.concat([result.quarantine, entries]).sort(
        "file_path", "row_number", maintain_order=True, nulls_last=False
    )
    return IngestResult(accepted=accepted, quarantine=quarantine, files=files)


def duplicate_files_frame(duplicates: list[tuple[LandingFile, str]]) -> pl.DataFrame:
    """Accounting rows for files whose bytes were already ingested elsewhere: nothing read here.

    Their rows are accounted for where the same bytes were first ingested, so counting them
    again would double count; the entry says which file that was.
    """
    return pl.DataFrame(
        {
            "partition_date": [f.partition_date for f, _ in duplicates],
            "file_path": [str(f.path) for f, _ in duplicates],
            "file_sha256": [f.sha256 for f, _ in duplicates],
            "size_bytes": [f.size_bytes for f, _ in duplicates],
            "arrived_at": [f.arrived_at.astimezone(UTC) for f, _ in duplicates],
            "status": ["duplicate"] * len(duplicates),
            "error": [
                f"{shown(f.path)}: same bytes as {shown(orig)}, ingested there"
                for f, orig in duplicates
            ],
            "rows_read": [0] * len(duplicates),
            "rows_accepted": [0] * len(duplicates),
            "rows_quarantined": [0] * len(duplicates),
        },
        schema=FILES_SCHEMA,
    )

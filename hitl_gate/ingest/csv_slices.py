"""A CSV or TSV file longer than one slice, parsed a slice of rows at a time.

Parsed whole, a million-row file was its bytes plus a parsed frame of about 0.6 GB, held until
its last slice was validated. Here the same reader (`read_csv`, same options) reads one slice of
rows at a time from the same bytes (`skip_rows_after_header`, `n_rows`), so beside the bytes
only one slice is parsed at once. Rows, their numbers (blank lines counted, then dropped),
types and values are those of the whole read. The rows skipped are found again for each slice
(a quote-aware scan of the bytes, about 0.05 CPU s per million rows), so a file of n slices
scans about n/2 files' worth: 1.5 for a 1M-row file in 250k slices. (Polars' streaming
`collect_batches` reads ahead: about half of a 1M-row file parsed at once whatever the batch
size.)

What only the whole file can tell may surface at a later slice, after earlier ones were
validated: a value the reader cannot take as a number (the file is then read all as text, as
`landing._read_csv` does) or a line it cannot read at all (the file is rejected, with the whole
reader's message). The caller then takes back the file's slices and reads it again
(`landing._DayRows.take_csv`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class CsvInSlices:
    """A text file whose header meets the contract, to be parsed `slice_rows` rows at a time."""

    data: bytes  # decoded: gunzipped, line ends as LF; not blank, not UTF-16/32
    fmt: str
    name: str  # the file as shown in messages
    separator: str
    wanted: list[str]  # the contract's columns, all in the header
    native: dict[str, pl.DataType]  # columns the reader parses itself (`landing._read_csv`)


def more_lines_than(data: bytes, rows: int) -> bool:
    """Whether the text may hold more than `rows` data rows: lines after the header (a row
    takes at least one, blank lines and line ends inside quotes make rows fewer), so that a
    file of `rows` rows is one slice."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    return lines - 1 > rows


def header(data: bytes, separator: str) -> list[str]:
    """The column names the reader gives the file (a repeated name gets `_duplicated_<n>`)."""
    scan = pl.scan_csv(data, infer_schema=False, encoding="utf8", separator=separator)
    return scan.collect_schema().names()


def csv_slices(source: CsvInSlices, native: bool, slice_rows: int) -> Iterator[pl.DataFrame]:
    """The file's rows, at most `slice_rows` a frame: `_source_row` (1 = the first line after
    the header, as the whole read numbers them) and the contract's columns, blank rows left out.

    With `native`, int and float columns are parsed by the reader, and a value it cannot parse
    raises (a `polars` error) at the slice holding it."""
    first = 0  # rows before this slice, blank ones included
    while True:
        # Each read starts one row early: the reader does not see a broken row that is the
        # first one after those it skips (an unclosed quote at a slice's start read as no row),
        # but does inside what it reads; the row read twice is dropped.
        again = 1 if first else 0
        batch = pl.read_csv(
            source.data,
            infer_schema=False,
            encoding="utf8",
            separator=source.separator,
            schema_overrides=source.native if native else None,
            skip_rows_after_header=first - again,
            n_rows=slice_rows + again,
        )
        numbered = batch.with_row_index("_source_row", offset=first - again + 1).slice(again)
        first += numbered.height
        kept = numbered.filter(~pl.all_horizontal(pl.exclude("_source_row").is_null()))
        if kept.height:
            yield kept.select(pl.col("_source_row").cast(pl.Int64), *source.wanted)
        if numbered.height < slice_rows:
            return

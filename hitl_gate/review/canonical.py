"""One way to turn a spreadsheet cell into text, used when exporting and when validating.

A case's context is digested at export and the digest recomputed from the returned file, so the
two sides must agree on every value after a trip through openpyxl or a CSV reader: Excel turns
5000.0 into 5000, CSV turns everything into text and XLSX turns CRLF into LF. Numbers are
therefore compared rounded to 6 decimal places in plain notation, blanks and None are the same,
and line endings are normalised. The cost: numeric-looking text such as "007" and "7" compare
equal, which is acceptable for a tamper check on values a reviewer has no reason to edit.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring_ascii

import polars as pl
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

CellValue = str | int | float | bool | None

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_QUANTUM = Decimal("0.000001")
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def _canonical_number(number: Decimal) -> str:
    try:
        text = format(number.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).normalize(), "f")
    except InvalidOperation:  # beyond 28 significant digits: no rounding, plain notation
        text = format(number, "f")
    return "0" if text in ("-0", "0") else text


def canonical_text(value: object) -> str:
    """The comparison form of one cell value (see the module docstring for the rules)."""
    if isinstance(value, str):
        return _canonical_str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return _canonical_number(Decimal(repr(value)))
    if isinstance(value, int | Decimal):
        return _canonical_number(Decimal(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return _canonical_str(str(value))


@lru_cache(maxsize=1 << 16)
def _canonical_str(value: str) -> str:
    """Text cells repeat a lot (queues, bands, codes, batch ids): the rules run once per value."""
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if _NUMBER_RE.match(text.strip()):
        try:
            return _canonical_number(Decimal(text.strip()))
        except InvalidOperation:
            return text
    return text


def export_value(value: object) -> CellValue:
    """The value written into a review file: numbers stay numbers, everything else is text.

    Dates become ISO text so Excel neither shifts time zones nor reformats them, and characters
    XLSX cannot store are dropped here, before the digest is taken, so the digest describes
    exactly what the reviewer received.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else canonical_text(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "; ".join(str(item) for item in value if item is not None)
    return ILLEGAL_CHARACTERS_RE.sub("", str(value))


# A spreadsheet reads text starting with one of these as a formula (or, for tab and CR, as a
# cell break hiding one): = + - @, tab, CR, and the full-width = + - @ Excel also accepts. LF
# too: an XLSX stores a CR as LF (XML line ends), and the CSV must read as the XLSX does.
FORMULA_TRIGGERS = "=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"
_NEUTRALISED = "^'[" + "".join(f"\\x{{{ord(c):x}}}" for c in FORMULA_TRIGGERS) + "]"


def neutralise_formula(value: CellValue) -> CellValue:
    """Text a spreadsheet would run as a formula, with a leading apostrophe; anything else as is.

    The one neutralisation of both reviewer files (cases.xlsx and cases.csv): applicant text
    such as `=HYPERLINK("http://...")` shows as text and never runs. Numbers, booleans and
    dates are typed cells, never formulas. `restore_neutralised` undoes it for digests.
    """
    if isinstance(value, str) and value[:1] in FORMULA_TRIGGERS and value:
        return "'" + value
    return value


def restore_neutralised(expr: pl.Expr) -> pl.Expr:
    """Text as it was before `neutralise_formula`: one apostrophe before a trigger removed.

    Applied to every context value digested (exported and returned alike), so a neutralised
    cell returned by a reviewer digests as the value exported, and the digest of a value that
    really began with an apostrophe is computed the same way on both sides.
    """
    return pl.when(expr.str.contains(_NEUTRALISED)).then(expr.str.slice(1)).otherwise(expr)


def _restored(value: object) -> object:
    """`restore_neutralised` of one value (text only)."""
    if isinstance(value, str) and value[:1] == "'" and value[1:2] and value[1] in FORMULA_TRIGGERS:
        return value[1:]
    return value


def csv_text(value: CellValue) -> str:
    """How an exported value is spelled in the CSV copy (full float precision, for tools)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return canonical_text(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def cell_text(value: object) -> str:
    """A free-text answer cell (verdict, reviewer id) as stripped text; integral floats as ints."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def row_digest(row: Mapping[str, object], columns: list[str]) -> str:
    """sha256 of the canonical JSON of `columns` of one row, each value in canonical form."""
    # Byte-identical to sha256(canonical_json({name: canonical_text(...)})), built directly:
    # keys sorted, no spaces, ASCII escapes, as json.dumps(sort_keys=True, ensure_ascii=True).
    body = ",".join(
        f"{encode_basestring_ascii(name)}:"
        f"{encode_basestring_ascii(canonical_text(_restored(row.get(name))))}"
        for name in sorted(dict.fromkeys(columns))
    )
    return hashlib.sha256(("{" + body + "}").encode("ascii")).hexdigest()


# --- Column-wise form: the same bytes as `row_digest`, computed for a whole frame at once. ---
# Export and intake both call `context_digests`, so a manifest digest and the digest of the
# returned row are always computed by the same code. Values that are not plain printable ASCII
# text or plain decimal numbers (exponents, non-ASCII, control characters, more than 12 integer
# digits) fall back to the Python definition once per distinct value; a property test pins the
# two forms to each other.

_PRINTABLE_RE = r"^[\x20-\x7e]*$"
_NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"  # `_NUMBER_RE` for the Rust engine
_PLAIN_RE = r"^ *([+-]?)(\d{1,22})(?:\.(\d*))? *$"
_SCALE = 10**6
_ROUNDED_INT_DIGITS = 12  # integer digits + 6 decimals stay within Int64


def raw_text(value: object) -> str | None:
    """A typed cell value as the text it stands for: canonical_text(raw) == canonical_text(v).

    Cheap on purpose (no rounding, no regex): the canonical form is applied column-wise later.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return repr(value) if math.isfinite(value) else canonical_text(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def sheet_text(value: object) -> str | None:
    """A cell read back from a workbook as text: integral floats as integers, else `raw_text`.

    Excel may hand back 5000 as 5000.0; an id typed as a number must still match "5000".
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return raw_text(value)


def _plain_number(sign: pl.Expr, whole: pl.Expr, fraction: pl.Expr) -> pl.Expr:
    """Canonical text of a plain decimal (groups of `_PLAIN_RE`), rounded half-even to 6 places.

    The parts are columns computed once: Polars does not share a repeated regex extraction.
    """
    exact = pl.concat_str(
        whole.str.strip_chars_start("0").replace("", "0"),
        pl.lit("."),
        fraction.str.strip_chars_end("0"),
    ).str.strip_chars_end(".")
    # Rounded: keep 6 decimals as an integer, add one when the rest rounds up (half-even).
    kept = (whole + fraction.str.slice(0, 6)).cast(pl.Int64, strict=False)
    first = fraction.str.slice(6, 1)
    tail_nonzero = fraction.str.slice(7).str.strip_chars("0") != ""
    up = (first > "5") | ((first == "5") & (tail_nonzero | (kept % 2 == 1)))
    rounded = kept + up.cast(pl.Int64)
    inexact = pl.concat_str(
        (rounded // _SCALE).cast(pl.String),
        pl.lit("."),
        (rounded % _SCALE).cast(pl.String).str.zfill(6).str.strip_chars_end("0"),
    ).str.strip_chars_end(".")
    magnitude = pl.when(fraction.str.len_chars() <= 6).then(exact).otherwise(inexact)
    negative = (sign == "-") & (magnitude != "0")
    return pl.when(negative).then(pl.lit("-") + magnitude).otherwise(magnitude)


def _fast_literals(value: pl.Expr, split: str) -> tuple[pl.Expr, pl.Expr]:
    """Expressions turning text column `value` into its JSON literal, in stages.

    Stage one classifies and splits each value once (Polars would otherwise repeat a regex
    extraction at every use); the last builds the literal: printable ASCII text that is not a
    number is quoted with backslash and quote escaped, plain decimals are rounded column-wise,
    anything else is null (left to Python).
    """
    parts = value.str.extract_groups(_PLAIN_RE)
    first = pl.struct(
        value.str.contains(_PRINTABLE_RE).alias("printable"),
        value.str.strip_chars(" ").str.contains(_NUMBER_PATTERN).alias("numeric"),
        parts.struct.field("1").alias("sign"),
        parts.struct.field("2").alias("whole"),
        parts.struct.field("3").fill_null("").alias("fraction"),
    ).alias(split)
    field = pl.col(split).struct.field
    whole, fraction = field("whole"), field("fraction")
    plain = whole.is_not_null() & (
        (fraction.str.len_chars() <= 6) | (whole.str.len_chars() <= _ROUNDED_INT_DIGITS)
    )
    escaped = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
        '"', '\\"', literal=True
    )
    number = _plain_number(field("sign"), whole, fraction)
    last = (
        pl.when(field("printable") & ~field("numeric"))
        .then(pl.concat_str(pl.lit('"'), escaped, pl.lit('"')))
        .when(field("printable") & plain)
        .then(pl.concat_str(pl.lit('"'), number, pl.lit('"')))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return first, last


def _fast_frame(text: pl.DataFrame) -> pl.DataFrame:
    """Column-wise literals of every column of `text` in one query (Polars spreads columns)."""
    stages = [_fast_literals(pl.col(name), f"{name}\0split") for name in text.columns]
    return (
        text.lazy()
        .with_columns(first for first, _ in stages)
        .select(last.alias(name) for name, (_, last) in zip(text.columns, stages, strict=True))
        .collect()
    )


def _python_literals(values: pl.Series) -> dict[str, str]:
    return {v: encode_basestring_ascii(canonical_text(v)) for v in values.unique().to_list()}


def json_literal_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """`encode_basestring_ascii(canonical_text(v))` for every value of every (text) column.

    A value's literal does not depend on its column, so every distinct value of the whole
    frame is computed once, in one query, and mapped back into each column: the cost is one
    pass over the distinct values, whatever the number of columns (a batch of a few rows and
    forty columns no longer pays forty sets of expressions). Values the column-wise rules
    leave null are computed in Python, once each.
    """
    text = frame.select(pl.all().cast(pl.String).fill_null(""))
    if text.width == 0:
        return text
    distinct = pl.concat([text[name] for name in text.columns]).unique().rename("d")
    literals = _fast_frame(distinct.to_frame())["d"]
    slow = distinct.filter(literals.is_null())
    if not slow.is_empty():
        literals = literals.fill_null(distinct.replace_strict(_python_literals(slow), default=None))
    return text.with_columns(
        text[name].replace_strict(distinct, literals, return_dtype=pl.String)
        for name in text.columns
    )


def canonical_json_rows(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    """Per row, the canonical JSON `row_digest` hashes; missing columns count as blank."""
    names = sorted(dict.fromkeys(columns))
    present = [name for name in names if name in frame.columns]
    literals = json_literal_frame(frame.select(present))
    parts: list[pl.Expr] = []
    for i, name in enumerate(names):
        parts.append(pl.lit(("{" if i == 0 else ",") + encode_basestring_ascii(name) + ":"))
        parts.append(pl.col(name) if name in frame.columns else pl.lit('""'))
    parts.append(pl.lit("}" if names else "{}"))
    if literals.width == 0:  # only constants: one value, repeated
        literals = pl.DataFrame({"_": pl.repeat("", frame.height, eager=True)})
        parts.append(pl.col("_"))
    return literals.select(pl.concat_str(parts).alias("canonical")).to_series()


# Below this many cells (rows x digested columns) the row-by-row definition is cheaper than
# building the column-wise query: a review batch (tens of rows, ~40 columns) took 15-60 ms
# column-wise, mostly Polars planning, and a few ms row by row (633 batches in the demo).
COLUMN_WISE_FROM_CELLS = 20_000


def context_digests(
    frame: pl.DataFrame,
    columns: Sequence[str],
    *,
    column_wise_from: int = COLUMN_WISE_FROM_CELLS,
) -> list[str]:
    """`row_digest` of every row of `frame` (text columns, as from `raw_text` or a CSV).

    The one digest function of export (manifest) and intake (returned rows). Small frames of
    text take the row-by-row definition (`row_digest`'s bytes, each distinct value's literal
    computed once), larger ones the column-wise form; a test pins both to `row_digest`.
    """
    schema = frame.schema  # built anew by each access: 0.15 ms for 40 columns, 600 batches
    present = [c for c in dict.fromkeys(columns) if c in schema]
    all_text = all(schema[c] in (pl.String, pl.Null) for c in present)
    if all_text and frame.height * max(1, len(present)) < column_wise_from:
        return _row_wise_digests(frame, columns)
    sha256 = hashlib.sha256
    text = [c for c in dict.fromkeys(columns) if schema.get(c) == pl.String]
    frame = frame.with_columns(restore_neutralised(pl.col(c)).alias(c) for c in text)
    rows = canonical_json_rows(frame, columns).to_list()
    return [sha256(text.encode("ascii")).hexdigest() for text in rows]


def _row_wise_digests(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """`row_digest` of each row of a frame of text columns (`text_row_digests`)."""
    present = {name: frame[name].to_list() for name in columns if name in frame.columns}
    return text_row_digests(present, columns, frame.height)


def text_row_digests(
    values: Mapping[str, Sequence[str | None]], columns: Sequence[str], height: int
) -> list[str]:
    """`row_digest` of each of `height` rows given column-wise as text (as `raw_text` gives it;
    a column not in `values` counts as blank), each distinct value's JSON literal computed once
    (cells repeat a lot: queues, bands, codes, policy versions). No frame is built: the export
    digests a dozen rows at a time."""
    names = sorted(dict.fromkeys(columns))
    keys = [encode_basestring_ascii(name) + ":" for name in names]
    listed = [values.get(name) for name in names]
    literals: dict[str | None, str] = {}

    def literal(value: str | None) -> str:
        found = literals.get(value)
        if found is None:
            found = literals[value] = encode_basestring_ascii(canonical_text(_restored(value)))
        return found

    sha256 = hashlib.sha256
    digests = []
    for row in range(height):
        body = ",".join(
            key + (literal(column[row]) if column is not None else '""')
            for key, column in zip(keys, listed, strict=True)
        )
        digests.append(sha256(("{" + body + "}").encode("ascii")).hexdigest())
    return digests

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
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring_ascii

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
        f"{encode_basestring_ascii(name)}:{encode_basestring_ascii(canonical_text(row.get(name)))}"
        for name in sorted(dict.fromkeys(columns))
    )
    return hashlib.sha256(("{" + body + "}").encode("ascii")).hexdigest()

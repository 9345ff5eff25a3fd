"""Untrusted text (file names, case ids, cell values) shown so it cannot fake or hide anything.

A file name or a case id comes from outside: printed raw, a newline in it fakes a log line and
a zero-width space or a bidi override makes two different values look alike. `shown` writes
backslashes, controls and invisible characters as Python-style escapes (`\\n`, `\\u200b`);
printable text (accents, CJK, spaces) stays as it is. `shown_series` does the same for a
column, paying the Python call only for values that need it.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePath

import polars as pl

# Unicode categories escaped by `shown`: controls, format characters (zero-width, bidi
# overrides), line and paragraph separators, unassigned and private-use code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(name: str | PurePath, *, backslashes: bool = True) -> str:
    """`name` with backslashes, controls and invisible characters escaped (`\\n`, `\\u200b`).

    Printable text (accents, CJK, spaces) stays as it is; anything that could end a log line,
    reorder text or be invisible is written as a Python-style escape, so two different names
    never show alike. `backslashes=False` leaves backslashes alone, for text already shown
    (a message that escaped its names) that must not be escaped twice.
    """
    text = str(name)
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\" if backslashes else char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif (char != " " and char.isspace()) or unicodedata.category(char) in (
            _ESCAPED_CATEGORIES
        ):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


# Values holding anything `shown` would change: only these pay for the Python call.
_NEEDS_ESCAPE = r"[\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]|[^\S ]"


def shown_series(values: pl.Series) -> pl.Series:
    """`shown` of each text value (nulls stay null); only values that need it pay a Python call."""
    needs = values.str.contains(_NEEDS_ESCAPE).fill_null(False)
    if not needs.any():
        return values
    positions = needs.arg_true()
    escaped = pl.Series([shown(v) for v in values.gather(positions).to_list()], dtype=pl.String)
    return values.scatter(positions, escaped)

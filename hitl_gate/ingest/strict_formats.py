"""Format rules a landing file must meet before its rows are read, with where it broke them.

Readers are lenient where leniency loses data silently: a JSON object with a key twice keeps
one value and drops the other, two columns that differ only by case or spacing make one of
them invisible to the contract, and a CR-only file is one long line. Here such a file is
refused whole, with the line (row) and the column named, or its line ends are made uniform
before any reader sees it.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

import polars as pl

from hitl_gate.ingest.names import shown


@dataclass(frozen=True)
class FormatProblem:
    """Why a file is refused whole: check, message naming line and column, rows it held."""

    check: str
    message: str
    column: str | None
    rows: int


def normalise_line_ends(data: bytes) -> bytes:
    """CRLF and lone CR (old Mac, or mixed within one file) as LF; LF-only data is untouched.

    Done on the raw bytes, like universal newlines: a CR inside a quoted CSV value becomes LF
    too, which is what a line break in a value means. JSON text cannot hold a raw CR in a
    string, so JSON Lines are unaffected beyond their line ends.
    """
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def column_key(name: str) -> str:
    """A column name with case, Unicode compatibility forms and all whitespace folded away."""
    return "".join(unicodedata.normalize("NFKC", name).split()).casefold()


def column_collisions(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of distinct column names that differ only by case or whitespace."""
    first: dict[str, str] = {}
    pairs = []
    for name in names:
        key = column_key(name)
        if key in first and first[key] != name:
            pairs.append((first[key], name))
        first.setdefault(key, name)
    return pairs


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


# Every JSON string token, with the colon that makes it a key. Outside strings JSON has no
# quote, so a left-to-right scan of a valid line matches exactly its string tokens, each from
# its opening quote (a pattern for keys alone could start at a value's closing quote and
# swallow the next key).
_STRING_TOKEN = r'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\r]*:?'
# What `bytes.strip()` strips: a line of only these is blank, not a row.
_NOT_BLANK = "[^ \t\n\r\x0b\x0c]"


def _candidate_lines(data: bytes) -> tuple[int, list[int]]:
    """Rows (non-blank lines) and the 0-based numbers of the lines that may repeat a key.

    A key given twice in one object is two key tokens with the same text, unless one of them
    is written with an escape (`"a"` and `"\\u0061"`). So only lines where a key's text repeats
    (at any depth, in any object: a superset) or a key holds a backslash can hold a duplicate;
    that is found for all lines at once in Polars, and only those lines are parsed in Python.
    """
    lines = pl.Series("line", data.decode("utf-8", errors="replace").split("\n"))
    keys = lines.str.extract_all(_STRING_TOKEN).list.eval(
        pl.element().filter(pl.element().str.ends_with(":")).str.strip_chars_end(": \t\r")
    )
    repeated = set(pl.arg_where(keys.list.n_unique() < keys.list.len(), eager=True).to_list())
    # An escape in a key can hide a repeat; only lines holding a backslash at all are looked at.
    escaped = pl.arg_where(lines.str.contains("\\", literal=True), eager=True)
    in_key = keys.gather(escaped).list.eval(pl.element().str.contains("\\", literal=True))
    repeated.update(escaped.filter(in_key.list.any()).to_list())
    rows = int(lines.str.contains(_NOT_BLANK).sum())
    return rows, sorted(repeated)


def jsonl_problem(data: bytes) -> FormatProblem | None:
    """A JSON Lines file's first duplicate key (at any depth), with its line and key.

    Lines that are not JSON are left to the reader, which reports them as unreadable; only the
    silent loss (a key given twice, one value dropped) is caught here. Lines are screened in
    Polars (`_candidate_lines`) and only those that may repeat a key are parsed in Python
    (docs/data_contracts.md, "Strict formats", has the measured cost).
    """
    rows, candidates = _candidate_lines(data)
    if not candidates:
        return None
    lines = data.split(b"\n")
    for index in candidates:
        try:
            json.loads(lines[index], object_pairs_hook=_unique_pairs)
        except _DuplicateKey as dup:
            return FormatProblem(
                check="duplicate_keys",
                message=(
                    f"line {index + 1}, column '{shown(dup.key)}': the key appears twice in one "
                    "JSON object (a reader would keep one value and drop the other)"
                ),
                column=dup.key,
                rows=rows,
            )
        except ValueError:
            continue
    return None


def collision_problem(names: list[str], rows: int) -> FormatProblem | None:
    """The columns (header, row 1) that differ only by case or whitespace, if any."""
    pairs = column_collisions(names)
    if not pairs:
        return None
    listed = ", ".join(f"'{shown(a)}' and '{shown(b)}'" for a, b in pairs)
    return FormatProblem(
        check="ambiguous_columns",
        message=f"header row, columns {listed}: names differ only by case or whitespace",
        column=pairs[0][1],
        rows=rows,
    )

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


def jsonl_problem(data: bytes) -> FormatProblem | None:
    """A JSON Lines file's first duplicate key (at any depth), with its line and key.

    Lines that are not JSON are left to the reader, which reports them as unreadable; only the
    silent loss (a key given twice, one value dropped) is caught here. Costs one JSON parse per
    line in Python, so only JSON Lines pay it.
    """
    rows = 0
    problem: tuple[int, str] | None = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        rows += 1
        if problem is not None:
            continue
        try:
            json.loads(line, object_pairs_hook=_unique_pairs)
        except _DuplicateKey as dup:
            problem = (number, dup.key)
        except ValueError:
            continue
    if problem is None:
        return None
    line_number, key = problem
    return FormatProblem(
        check="duplicate_keys",
        message=(
            f"line {line_number}, column '{shown(key)}': the key appears twice in one JSON object "
            "(a reader would keep one value and drop the other)"
        ),
        column=key,
        rows=rows,
    )


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

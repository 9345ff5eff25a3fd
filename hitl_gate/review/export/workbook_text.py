"""A batch workbook's package written as text from a template openpyxl wrote once per shape.

Every batch workbook of a domain has the same structure: the same columns, styles, sheet
layout, protection, print setup, theme, relationships and content types. Only the cases rows,
the instructions text, the drop-down lists' values and a few ranges that follow the row and
list counts change (plus the dates in `docProps/core.xml`). openpyxl rebuilds and serialises
all of it per batch (about 35 ms of CPU for a 32-row batch, some 600 batches in the demo).

A `PackageTemplate` is cut from one package openpyxl wrote for a one-row batch of the shape:
each part is kept as bytes, the parts that vary are split at the elements that vary
(`Slots`), and the style ids openpyxl gave each column are read from that row. A batch's
package is then those bytes with the batch's elements put in, every part (and zip entry
attribute) what openpyxl writes for the same batch (pinned by tests/unit/review).
"""

from __future__ import annotations

import io
import math
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.compat import safe_string
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import IllegalCharacterError

from hitl_gate.review.canonical import CellValue, neutralise_formula

_MAX_TEXT = 32767  # openpyxl truncates longer text, as Excel's cell limit
_LINE_POINTS = 15  # the height of one line of the default 11-point font


def cell_text(value: str) -> str:
    """`value` as an openpyxl cell stores text: truncated to the cell limit, control
    characters refused (the same error openpyxl raises)."""
    value = value[:_MAX_TEXT]
    if ILLEGAL_CHARACTERS_RE.search(value):
        raise IllegalCharacterError(f"{value} cannot be used in worksheets.")
    return value


def text_cell(head: str, value: str) -> str:
    """`<c>` of a text cell as openpyxl writes it (an inline string); `head` is the element's
    start with its reference and style (`_head`)."""
    if not value:
        return f'{head} t="inlineStr" />'
    stripped = value.strip()
    space = ' xml:space="preserve"' if stripped and value != stripped else ""
    return f'{head} t="inlineStr"><is><t{space}>{escape(value)}</t></is></c>'


def _head(ref: str, style: int) -> str:
    """The start of a `<c>` element: openpyxl writes no style attribute for style 0."""
    return f'<c r="{ref}" s="{style}"' if style else f'<c r="{ref}"'


def supported(value: CellValue) -> bool:
    """Whether a cases cell `value` takes one of the forms written here (text, a finite
    number, a boolean, a blank); any other kind is written by openpyxl."""
    if value is None or type(value) in (str, bool, int):
        return True
    return type(value) is float and math.isfinite(value)


def _case_cell(head: str, value: CellValue) -> str:
    if value is None:
        return f'{head} t="n" />'
    if isinstance(value, str):
        return text_cell(head, cell_text(str(neutralise_formula(value))))
    kind = "b" if isinstance(value, bool) else "n"
    return f'{head} t="{kind}"><v>{safe_string(value)}</v></c>'


class Slots(NamedTuple):
    """A part cut at the elements that vary: fixed bytes around each variable span."""

    fixed: tuple[bytes, ...]

    @classmethod
    def cut(cls, xml: bytes, *patterns: bytes) -> Slots:
        """Split `xml` at each pattern's group 1; each pattern must match exactly once,
        after the one before it (the structure is openpyxl's, so anything else is a bug)."""
        pieces, start = [], 0
        for pattern in patterns:
            matches = list(re.finditer(pattern, xml, re.DOTALL))
            if len(matches) != 1 or matches[0].start(1) < start:
                raise ValueError(f"workbook template: {pattern!r} not found once, in order")
            pieces.append(xml[start : matches[0].start(1)])
            start = matches[0].end(1)
        pieces.append(xml[start:])
        return cls(tuple(pieces))

    def fill(self, *values: str) -> bytes:
        if len(values) != len(self.fixed) - 1:
            raise ValueError("workbook template: one value per slot")
        out = [self.fixed[0]]
        for value, fixed in zip(values, self.fixed[1:], strict=True):
            out += [value.encode("utf-8"), fixed]
        return b"".join(out)


_DIMENSION = rb'<dimension ref="([^"]*)" />'
_ROWS_AFTER_FIRST = rb'(<row r="2"[ >].*)</sheetData>'
_ALL_ROWS = rb"<sheetData>(.*)</sheetData>"
_FILTER = rb'<autoFilter ref="([^"]*)" />'
_VALIDATIONS = rb"(<dataValidations .*</dataValidations>)"
_FILTER_NAME = rb'<definedName name="_xlnm\._FilterDatabase"[^>]*>([^<]*)</definedName>'
_ROW2_STYLES = re.compile(rb'<c r="[A-Z]+2" s="(\d+)"')
_LABEL_STYLES = re.compile(rb'<c r="([AB])1" s="(\d+)"')


class PartNames(NamedTuple):
    """Where openpyxl put each part of the template package."""

    cases: str
    instructions: str
    lists: str
    core: str
    workbook: str


@dataclass(frozen=True)
class Batch:
    """What one batch puts into the template (the rest is the shape's)."""

    rows: Sequence[Mapping[str, CellValue]]
    instructions: Sequence[tuple[str, str]]
    lists: Sequence[Sequence[str]]  # the drop-down lists' values, in the lists sheet's order
    validations_xml: str  # the cases sheet's `<dataValidations>`, as openpyxl writes it
    filter_name: Callable[[str], str]  # the `_FilterDatabase` name's value for a range
    core_xml: bytes


class PackageTemplate:
    """The parts of a shape's workbook; `write` fills in one batch (see the module doc)."""

    def __init__(
        self,
        package: bytes,
        names: PartNames,
        header: Sequence[str],
        wrapped: Sequence[tuple[str, int]],
    ) -> None:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            self.entries = [(i.filename, i.external_attr) for i in archive.infolist()]
            parts = {name: archive.read(name) for name, _ in self.entries}
        self.names = names
        self.parts = parts
        self.header = list(header)
        self.letters = [get_column_letter(i) for i in range(1, len(header) + 1)]
        self.wrapped = list(wrapped)
        cases = parts[names.cases]
        self.cases = Slots.cut(cases, _DIMENSION, _ROWS_AFTER_FIRST, _FILTER, _VALIDATIONS)
        self.instructions = Slots.cut(parts[names.instructions], _DIMENSION, _ALL_ROWS)
        self.lists = Slots.cut(parts[names.lists], _DIMENSION, _ROWS_AFTER_FIRST)
        self.workbook = Slots.cut(parts[names.workbook], _FILTER_NAME)
        row2 = cases[cases.index(b'<row r="2"') :]
        self.styles = [int(s) for s in _ROW2_STYLES.findall(row2[: row2.index(b"</row>")])]
        labels = dict(_LABEL_STYLES.findall(parts[names.instructions]))
        self.label_style, self.text_style = int(labels[b"A"]), int(labels[b"B"])
        if len(self.styles) != len(header):
            raise ValueError("workbook template: one style per column expected in row 2")

    def write(self, path: Path, batch: Batch) -> None:
        """The batch's package, written whole once complete (a partial file is never left)."""
        last = f"{self.letters[-1]}{len(batch.rows) + 1}"
        filled = {
            self.names.cases: self.cases.fill(
                f"A1:{last}",
                self._case_rows(batch.rows),
                f"A1:{last}",
                batch.validations_xml,
            ),  # fmt: skip
            self.names.instructions: self.instructions.fill(
                f"A1:B{len(batch.instructions)}", self._instruction_rows(batch.instructions)
            ),
            self.names.lists: self.lists.fill(*self._list_rows(batch.lists)),
            self.names.workbook: self.workbook.fill(batch.filter_name(f"A1:{last}")),
            self.names.core: batch.core_xml,
        }
        stamp = time.localtime(time.time())[:6]
        saved = io.BytesIO()
        with zipfile.ZipFile(saved, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name, attributes in self.entries:
                entry = zipfile.ZipInfo(name, date_time=stamp)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = attributes
                archive.writestr(entry, filled.get(name, self.parts[name]))
        path.write_bytes(saved.getvalue())

    def _case_rows(self, rows: Sequence[Mapping[str, CellValue]]) -> str:
        parts = []
        cells = [
            (f'<c r="{letter}', f'" s="{style}"', name)
            for letter, name, style in zip(self.letters, self.header, self.styles, strict=True)
        ]
        for index, row in enumerate(rows, start=2):
            height = ""
            if self.wrapped:
                height = (
                    f' ht="{safe_string(float(row_height(row, self.wrapped)))}" customHeight="1"'
                )
            parts.append(f'<row r="{index}"{height}>')
            for start, style, name in cells:  # every cases cell has a style (its column's)
                parts.append(_case_cell(f"{start}{index}{style}", row.get(name)))
            parts.append("</row>")
        return "".join(parts)

    def _instruction_rows(self, instructions: Sequence[tuple[str, str]]) -> str:
        parts = []
        for index, (label, text) in enumerate(instructions, start=1):
            parts.append(
                f'<row r="{index}">'
                f"{text_cell(_head(f'A{index}', self.label_style), cell_text(label))}"
                f"{text_cell(_head(f'B{index}', self.text_style), cell_text(text))}</row>"
            )
        return "".join(parts)

    @staticmethod
    def _list_rows(lists: Sequence[Sequence[str]]) -> tuple[str, str]:
        """The lists sheet's dimension and its rows after the names (row 1, the shape's)."""
        longest = max(len(values) for values in lists)
        letters = [get_column_letter(i) for i in range(1, len(lists) + 1)]
        parts = []
        for index in range(2, longest + 2):
            parts.append(f'<row r="{index}">')
            for letter, values in zip(letters, lists, strict=True):
                if index - 2 < len(values):
                    cell = text_cell(_head(f"{letter}{index}", 0), cell_text(values[index - 2]))
                    parts.append(cell)
            parts.append("</row>")
        return f"A1:{letters[-1]}{longest + 1}", "".join(parts)


def _lines(value: object, width: int) -> int:
    """Lines a wrapped cell of `width` characters needs (a little generous: fonts vary)."""
    if not isinstance(value, str) or not value:
        return 1
    return sum(max(1, -(-len(line) * 11 // (10 * width))) for line in value.split("\n"))


def row_height(row: Mapping[str, CellValue], wrapped: Sequence[tuple[str, int]]) -> int:
    """Tall enough to show whole reasons: not every viewer fits rows itself."""
    return _LINE_POINTS * max(_lines(row.get(name), width) for name, width in wrapped) + 3

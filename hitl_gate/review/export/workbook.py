"""The reviewer's XLSX: a protected 'cases' sheet where only the answer columns can be typed in.

Locking the context is a guard against slips, not a security control (sheet protection without
a password is one click away); the signed manifest and per-case digests are what detect edits.
"""

from __future__ import annotations

import io
import math
import re
import stat
import time
import zipfile
from collections.abc import Mapping, Sequence
from copy import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.compat import safe_string
from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.utils.exceptions import IllegalCharacterError
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from hitl_gate.review.canonical import CellValue, neutralise_formula

CASES_SHEET = "cases"
INSTRUCTIONS_SHEET = "instructions"
LISTS_SHEET = "lists"
_LOCKED_FILL = PatternFill("solid", fgColor="EEEEEE")
_ANSWER_FILL = PatternFill("solid", fgColor="FFF2CC")
_TOP = Alignment(vertical="top")
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_LINE_POINTS = 15  # the height of one line of the default 11-point font


def _column_styles(
    sheet: Worksheet,
    header: Sequence[str],
    answer_columns: Sequence[str],
    text_widths: Mapping[str, int],
) -> list[StyleArray]:
    """The style of each column's data cells, resolved once per sheet.

    Assigning `fill`/`protection` per cell looks the style up in the workbook each time (most
    of the export's cost at scale, measured in bench/); copying a resolved style array is
    a plain array copy with the same result.
    """
    answer, locked, text = Cell(sheet), Cell(sheet), Cell(sheet)  # detached, never written
    answer.protection = Protection(locked=False)
    answer.fill = _ANSWER_FILL
    answer.alignment = _TOP
    locked.fill = _LOCKED_FILL
    locked.alignment = _TOP
    text.fill = _LOCKED_FILL
    text.alignment = _WRAPPED
    styles = []
    for name in header:
        template = answer if name in answer_columns else text if name in text_widths else locked
        styles.append(template._style)
    return styles


def _bold_wrapped(sheet: Worksheet) -> StyleArray:
    """The style of header and label cells (bold, wrapped), resolved once (see `_column_styles`)."""
    cell = Cell(sheet)  # detached, never written
    cell.font = Font(bold=True)
    cell.alignment = _WRAPPED
    return cell._style


def _width(name: str, answer_columns: Sequence[str], text_widths: Mapping[str, int]) -> float:
    if name in text_widths:
        return text_widths[name]
    if name == "rationale":
        return 40
    return max(10, min(24, len(name) + 3)) if name not in answer_columns else 20


def _lines(value: object, width: int) -> int:
    """Lines a wrapped cell of `width` characters needs (a little generous: fonts vary)."""
    if not isinstance(value, str) or not value:
        return 1
    return sum(max(1, -(-len(line) * 11 // (10 * width))) for line in value.split("\n"))


def _set_page(sheet: Worksheet) -> None:
    """Printable: landscape, as wide as one page, header row repeated on every page."""
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.print_title_rows = "1:1"
    sheet.print_options.gridLines = True
    sheet.page_margins.left = sheet.page_margins.right = 0.4


def _row_height(row: Mapping[str, CellValue], wrapped: Sequence[tuple[str, int]]) -> int:
    """Tall enough to show whole reasons: not every viewer fits rows itself."""
    return _LINE_POINTS * max(_lines(row.get(name), width) for name, width in wrapped) + 3


def _write_cases(
    sheet: Worksheet,
    header: Sequence[str],
    rows: Sequence[Mapping[str, CellValue]],
    answer_columns: Sequence[str],
    text_widths: Mapping[str, int],
) -> None:
    """The cases sheet, its data rows as openpyxl cells (the reference for `_CasesXml`)."""
    sheet.append(list(header))
    bold = _bold_wrapped(sheet)
    for cell in sheet[1]:
        cell._style = copy(bold)
    styles = _column_styles(sheet, header, answer_columns, text_widths)
    wrapped = [(n, text_widths[n]) for n in header if n in text_widths]
    for row_index, row in enumerate(rows, start=2):
        for col_index, name in enumerate(header, start=1):
            value = neutralise_formula(row.get(name))
            cell = sheet.cell(row=row_index, column=col_index, value=value)
            if isinstance(cell.value, str):
                cell.data_type = "s"  # and stored as text, never as a formula
            cell._style = copy(styles[col_index - 1])
        if wrapped:
            sheet.row_dimensions[row_index].height = _row_height(row, wrapped)
    _finish_cases(sheet, header, answer_columns, text_widths, sheet.dimensions)


def _finish_cases(
    sheet: Worksheet,
    header: Sequence[str],
    answer_columns: Sequence[str],
    text_widths: Mapping[str, int],
    filter_ref: str,
) -> None:
    """Widths, frozen panes, page, filter and protection of the cases sheet."""
    for col_index, name in enumerate(header, start=1):
        width = _width(name, answer_columns, text_widths)
        sheet.column_dimensions[get_column_letter(col_index)].width = width
    sheet.freeze_panes = "B2"  # the header row and the case id stay in view
    _set_page(sheet)
    sheet.auto_filter.ref = filter_ref
    # Protected, but sorting/filtering and resizing stay allowed (False = not protected).
    sheet.protection.sheet = True
    sheet.protection.autoFilter = False
    sheet.protection.sort = False
    sheet.protection.formatColumns = False
    sheet.protection.formatRows = False


def _text_cell(ref: str, style: int, value: str) -> str:
    """`<c>` of a text cell as openpyxl writes it (inline string; see `_CasesXml`)."""
    if not value:
        return f'<c r="{ref}" s="{style}" t="inlineStr" />'
    stripped = value.strip()
    space = ' xml:space="preserve"' if stripped and value != stripped else ""
    return f'<c r="{ref}" s="{style}" t="inlineStr"><is><t{space}>{escape(value)}</t></is></c>'


class _CasesXml:
    """The cases sheet's data rows as the XML openpyxl writes for them, built as text.

    openpyxl serialises each cell through ElementTree (about 40 ms of CPU for a 32-row batch
    workbook, 633 of them in the demo); these rows are plain text cells, numbers, booleans and
    blanks, so their XML is a few fixed forms. The sheet is saved by openpyxl with its header
    row only and these rows are put in its `<sheetData>`: every part of the file is the bytes
    openpyxl writes with the rows as cells (`_write_cases`, pinned by tests/unit/review), the
    style ids registered in the order openpyxl's writer would register them.
    """

    def __init__(
        self,
        sheet: Worksheet,
        header: Sequence[str],
        answer_columns: Sequence[str],
        text_widths: Mapping[str, int],
    ) -> None:
        self.header = list(header)
        self.letters = [get_column_letter(i) for i in range(1, len(header) + 1)]
        self.wrapped = [(n, text_widths[n]) for n in header if n in text_widths]
        bold = Cell(sheet)  # detached; `style_id` registers a style as the writer would
        bold._style = _bold_wrapped(sheet)
        self._register = [bold, *self._detached(sheet, header, answer_columns, text_widths)]

    @staticmethod
    def _detached(
        sheet: Worksheet,
        header: Sequence[str],
        answer_columns: Sequence[str],
        text_widths: Mapping[str, int],
    ) -> list[Cell]:
        cells = []
        for style in _column_styles(sheet, header, answer_columns, text_widths):
            cell = Cell(sheet)
            cell._style = style
            cells.append(cell)
        return cells

    @staticmethod
    def supports(value: CellValue) -> bool:
        """Whether `value` takes one of the forms written here (else the reference path)."""
        if value is None or type(value) in (str, bool, int):
            return True
        return type(value) is float and math.isfinite(value)

    def style_ids(self, n_rows: int) -> list[int]:
        """The data cells' style ids, registered as the writer meets them: header, then row 2."""
        if not n_rows:  # no data cell: the writer registers none of their styles
            return []
        return [cell.style_id for cell in self._register][1:]

    def rows(self, rows: Sequence[Mapping[str, CellValue]], styles: Sequence[int]) -> str:
        parts = []
        for row_index, row in enumerate(rows, start=2):
            height = (
                f' ht="{safe_string(float(_row_height(row, self.wrapped)))}" customHeight="1"'
                if self.wrapped
                else ""
            )
            parts.append(f'<row r="{row_index}"{height}>')
            for letter, name, style in zip(self.letters, self.header, styles, strict=True):
                parts.append(self._cell(f"{letter}{row_index}", style, row.get(name)))
            parts.append("</row>")
        return "".join(parts)

    @staticmethod
    def _cell(ref: str, style: int, value: CellValue) -> str:
        value = neutralise_formula(value)
        if value is None:
            return f'<c r="{ref}" s="{style}" t="n" />'
        if isinstance(value, str):
            value = value[:32767]  # openpyxl's limit, as its cell would store it
            if ILLEGAL_CHARACTERS_RE.search(value):
                raise IllegalCharacterError(f"{value} cannot be used in worksheets.")
            return _text_cell(ref, style, value)
        kind = "b" if isinstance(value, bool) else "n"
        return f'<c r="{ref}" s="{style}" t="{kind}"><v>{safe_string(value)}</v></c>'


_DIMENSION = re.compile(rb'<dimension ref="[^"]*" />')
_SHEET_DATA_END = b"</sheetData>"


def _spliced(sheet_xml: bytes, rows_xml: str, dimension: str) -> bytes:
    """`sheet_xml` (the cases sheet with its header row) with `rows_xml` after the header row."""
    data, found = _DIMENSION.subn(f'<dimension ref="{dimension}" />'.encode(), sheet_xml, 1)
    if found != 1:
        raise ValueError("cases sheet: no dimension element to update")
    end = data.index(_SHEET_DATA_END)  # after the header row
    return data[:end] + rows_xml.encode("utf-8") + data[end:]


class _InMemoryWriter(ExcelWriter):
    """openpyxl's package writer, each worksheet serialised in memory, the cases rows spliced in.

    openpyxl writes every worksheet to a named temporary file, copies it into the package and
    removes it (three file-system calls a sheet, three sheets a batch, 633 batches); the batch
    rows were then put in by reading and compressing the whole package a second time. Here a
    sheet is written to a buffer and stored once, its rows already in place, with the entry
    attributes openpyxl gives a sheet copied from its temporary file (a regular file, mode
    0600), so every part and entry is what openpyxl's own save would write (tests/unit/review).
    """

    def __init__(self, workbook: Workbook, archive: zipfile.ZipFile, splice: _Splice) -> None:
        super().__init__(workbook, archive)
        self.splice = splice

    def write_worksheet(self, ws: Worksheet) -> None:
        ws._drawing = SpreadsheetDrawing()
        ws._drawing.charts = ws._charts
        ws._drawing.images = ws._images
        writer = WorksheetWriter(ws, out=io.BytesIO())
        writer.write()
        ws._rels = writer._rels
        part = ws.path[1:]
        data = writer.read()
        if ws is self.splice.sheet:
            data = _spliced(data, self.splice.rows_xml, self.splice.dimension)
        entry = zipfile.ZipInfo(part, date_time=time.localtime(time.time())[:6])
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry.external_attr = (stat.S_IFREG | 0o600) << 16
        self._archive.writestr(entry, data)
        self.manifest.append(ws)


class _Splice(NamedTuple):
    sheet: Worksheet  # the cases sheet (its part name is given when the package is written)
    rows_xml: str
    dimension: str


def _save_with_rows(workbook: Workbook, path: Path, splice: _Splice) -> None:
    """Save as `Workbook.save` does, the cases rows spliced in, in one pass; the file is
    written whole once the package is complete."""
    saved = io.BytesIO()
    with zipfile.ZipFile(saved, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        workbook.properties.modified = datetime.now(UTC).replace(tzinfo=None)
        _InMemoryWriter(workbook, archive, splice).write_data()
    path.write_bytes(saved.getvalue())


def _add_choices(
    workbook: Workbook,
    sheet: Worksheet,
    header: Sequence[str],
    n_rows: int,
    choices: Mapping[str, Sequence[str]],
) -> None:
    """Drop-downs whose values live on a hidden sheet: inline lists are capped at 255 chars."""
    lists = workbook.create_sheet(LISTS_SHEET)
    lists.sheet_state = "hidden"
    lists.protection.sheet = True
    last_row = max(n_rows + 1, 2)
    for list_index, (name, values) in enumerate(choices.items(), start=1):
        letter = get_column_letter(list_index)
        lists.cell(row=1, column=list_index, value=name)
        for value_index, value in enumerate(values, start=2):
            lists.cell(row=value_index, column=list_index, value=value).data_type = "s"
        source = f"{quote_sheetname(LISTS_SHEET)}!${letter}$2:${letter}${len(values) + 1}"
        validation = DataValidation(
            type="list",
            formula1=source,
            allow_blank=True,
            showErrorMessage=True,
            errorTitle=f"Invalid {name}",
            error=f"Choose one of: {', '.join(values)}",
        )
        target = get_column_letter(header.index(name) + 1)
        validation.add(f"{target}2:{target}{last_row}")
        sheet.add_data_validation(validation)


def write_review_workbook(
    path: Path,
    *,
    header: Sequence[str],
    rows: Sequence[Mapping[str, CellValue]],
    answer_columns: Sequence[str],
    choices: Mapping[str, Sequence[str]],
    instructions: Sequence[tuple[str, str]],
    created_at: datetime,
    text_widths: Mapping[str, int] | None = None,
    as_text: bool = True,
) -> None:
    """Write the cases sheet, the instructions sheet and the hidden drop-down lists.

    `text_widths` names the columns of whole sentences (wrapped) and their widths in characters.
    The data rows are written as text (`_CasesXml`) unless `as_text` is False or a value is
    of a kind it does not write; then as openpyxl cells, the reference it is tested against.
    """
    widths = text_widths or {}
    workbook = Workbook()
    cases = workbook.active
    cases.title = CASES_SHEET
    fast = (
        as_text
        and bool(header)
        and all(_CasesXml.supports(row.get(name)) for row in rows for name in header)
    )
    if fast:
        cases_xml = _CasesXml(cases, header, answer_columns, widths)
        data_styles = cases_xml.style_ids(len(rows))
        cases.append(list(header))
        for cell in cases[1]:
            cell._style = copy(cases_xml._register[0]._style)
        last = f"{cases_xml.letters[-1]}{len(rows) + 1}"
        _finish_cases(cases, header, answer_columns, widths, f"A1:{last}")
    else:
        _write_cases(cases, header, rows, answer_columns, widths)
    _add_choices(workbook, cases, header, len(rows), choices)

    guide = workbook.create_sheet(INSTRUCTIONS_SHEET, index=1)
    wrapped = Cell(guide)  # detached: the text column's style, resolved once
    wrapped.alignment = _WRAPPED
    styles = (_bold_wrapped(guide), wrapped._style)  # label, text
    for row, (label, text) in enumerate(instructions, start=1):
        for column, value in enumerate((label, text), start=1):
            cell = guide.cell(row=row, column=column, value=value)
            if isinstance(cell.value, str):
                cell.data_type = "s"
            cell._style = copy(styles[column - 1])
    guide.column_dimensions["A"].width = 28
    guide.column_dimensions["B"].width = 100
    _set_page(guide)
    guide.protection.sheet = True

    workbook.properties.creator = "hitl-gate"
    # XLSX stores naive UTC; created_at is required to be timezone-aware by the exporter.
    workbook.properties.created = created_at.astimezone(UTC).replace(tzinfo=None)
    if not fast:
        workbook.save(path)
        return
    _save_with_rows(workbook, path, _Splice(cases, cases_xml.rows(rows, data_styles), f"A1:{last}"))

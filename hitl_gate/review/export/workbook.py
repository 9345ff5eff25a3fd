"""The reviewer's XLSX: a protected 'cases' sheet where only the answer columns can be typed in.

Locking the context is a guard against slips, not a security control (sheet protection without
a password is one click away); the signed manifest and per-case digests are what detect edits.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from copy import copy
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

from openpyxl import Workbook
from openpyxl.cell.cell import Cell
from openpyxl.packaging.core import DocumentProperties
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.utils.cell import absolute_coordinate
from openpyxl.worksheet.datavalidation import DataValidation, DataValidationList
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.xml.constants import ARC_CORE, ARC_WORKBOOK
from openpyxl.xml.functions import tostring

from hitl_gate.review.canonical import CellValue, neutralise_formula
from hitl_gate.review.export.workbook_text import (
    Batch,
    PackageTemplate,
    PartNames,
    row_height,
    supported,
)

CASES_SHEET = "cases"
INSTRUCTIONS_SHEET = "instructions"
LISTS_SHEET = "lists"
_LOCKED_FILL = PatternFill("solid", fgColor="EEEEEE")
_ANSWER_FILL = PatternFill("solid", fgColor="FFF2CC")
_TOP = Alignment(vertical="top")
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_CREATOR = "hitl-gate"
_SHEETS = (CASES_SHEET, INSTRUCTIONS_SHEET, LISTS_SHEET)


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


def _write_cases(
    sheet: Worksheet,
    header: Sequence[str],
    rows: Sequence[Mapping[str, CellValue]],
    answer_columns: Sequence[str],
    text_widths: Mapping[str, int],
) -> None:
    """The cases sheet, its data rows as openpyxl cells (the reference for `workbook_text`)."""
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
            sheet.row_dimensions[row_index].height = row_height(row, wrapped)
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


def _validations(
    header: Sequence[str], n_rows: int, choices: Mapping[str, Sequence[str]]
) -> DataValidationList:
    """The drop-downs of the answer columns, their values on the hidden lists sheet."""
    validations = DataValidationList()
    last_row = max(n_rows + 1, 2)
    for list_index, (name, values) in enumerate(choices.items(), start=1):
        letter = get_column_letter(list_index)
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
        validations.append(validation)
    return validations


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
    for list_index, (name, values) in enumerate(choices.items(), start=1):
        lists.cell(row=1, column=list_index, value=name)
        for value_index, value in enumerate(values, start=2):
            lists.cell(row=value_index, column=list_index, value=value).data_type = "s"
    for validation in _validations(header, n_rows, choices).dataValidation:
        sheet.add_data_validation(validation)


def _build(
    header: Sequence[str],
    rows: Sequence[Mapping[str, CellValue]],
    answer_columns: Sequence[str],
    choices: Mapping[str, Sequence[str]],
    instructions: Sequence[tuple[str, str]],
    created_at: datetime,
    text_widths: Mapping[str, int],
) -> Workbook:
    """The workbook as openpyxl objects: the reference every written package is checked against."""
    workbook = Workbook()
    cases = workbook.active
    cases.title = CASES_SHEET
    _write_cases(cases, header, rows, answer_columns, text_widths)
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

    workbook.properties.creator = _CREATOR
    workbook.properties.created = _naive_utc(created_at)
    return workbook


def _naive_utc(moment: datetime) -> datetime:
    """XLSX stores naive UTC; `created_at` is required to be timezone-aware by the exporter."""
    return moment.astimezone(UTC).replace(tzinfo=None)


class _Shape(NamedTuple):
    """What a batch workbook's structure depends on (the key of its template)."""

    header: tuple[str, ...]
    answer_columns: tuple[str, ...]
    lists: tuple[str, ...]
    text_widths: tuple[tuple[str, int], ...]


@lru_cache(maxsize=16)
def _template(shape: _Shape) -> PackageTemplate:
    """The shape's package, written by openpyxl for a one-row batch, cut into its parts."""
    widths = dict(shape.text_widths)
    workbook = _build(
        shape.header,
        [dict.fromkeys(shape.header)],
        shape.answer_columns,
        {name: ["-"] for name in shape.lists},
        [("-", "-")],
        datetime(2000, 1, 1, tzinfo=UTC),
        widths,
    )
    saved = io.BytesIO()
    workbook.save(saved)
    cases, guide, lists = (workbook[name].path[1:] for name in _SHEETS)
    names = PartNames(cases, guide, lists, core=ARC_CORE, workbook=ARC_WORKBOOK)
    wrapped = [(n, widths[n]) for n in shape.header if n in widths]
    return PackageTemplate(saved.getvalue(), names, shape.header, wrapped)


def _as_text(
    header: Sequence[str],
    rows: Sequence[Mapping[str, CellValue]],
    choices: Mapping[str, Sequence[str]],
    instructions: Sequence[tuple[str, str]],
) -> bool:
    """Whether the batch takes the template's forms: at least one row, one instruction and one
    list (else openpyxl registers other styles), and only values written as text."""
    if not (header and rows and choices and instructions):
        return False
    texts = [
        *(v for pair in instructions for v in pair),
        *(v for vs in choices.values() for v in vs),
    ]
    return all(type(text) is str for text in texts) and all(
        supported(row.get(name)) for row in rows for name in header
    )


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
    The package is written as text from the shape's template (`workbook_text`) unless
    `as_text` is False or the batch has a form the template does not cover; then by openpyxl,
    the reference the text is tested against byte for byte.
    """
    widths = text_widths or {}
    if not (as_text and _as_text(header, rows, choices, instructions)):
        _build(header, rows, answer_columns, choices, instructions, created_at, widths).save(path)
        return
    shape = _Shape(tuple(header), tuple(answer_columns), tuple(choices), tuple(widths.items()))
    core = DocumentProperties(
        creator=_CREATOR,
        created=_naive_utc(created_at),
        modified=datetime.now(UTC).replace(tzinfo=None),  # as `Workbook.save` stamps it
    )
    batch = Batch(
        rows=rows,
        instructions=instructions,
        lists=list(choices.values()),
        validations_xml=_validations_xml(
            tuple(header), len(rows), tuple((name, tuple(v)) for name, v in choices.items())
        ),
        filter_name=_filter_name,
        core_xml=tostring(core.to_tree()),
    )
    _template(shape).write(path, batch)


@lru_cache(maxsize=256)
def _validations_xml(
    header: tuple[str, ...], n_rows: int, choices: tuple[tuple[str, tuple[str, ...]], ...]
) -> str:
    """The cases sheet's `<dataValidations>` as openpyxl writes it: the same few headers, row
    counts and lists repeat over a day's hundreds of batches, so each is serialised once."""
    return tostring(_validations(header, n_rows, dict(choices)).to_tree()).decode()


def _filter_name(ref: str) -> str:
    """The cases sheet's `_FilterDatabase` name, as openpyxl's workbook writer defines it."""
    return escape(f"{quote_sheetname(CASES_SHEET)}!{absolute_coordinate(ref)}")

"""The batch workbook written as text is the bytes openpyxl writes for it.

`write_review_workbook` fills the shape's template (written by openpyxl once per process) with
the batch's rows, instructions and drop-down lists as XML text (`as_text=True`, the export's
path) instead of building it as openpyxl objects (`as_text=False`, the reference). Every part
of the package must be byte-identical between the two: the same cells, types, escapes, styles
(and style ids), row heights, dimensions, filter and drop-down ranges and lists, instructions.
Values of any other kind fall back.
"""

from __future__ import annotations

import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.utils.exceptions import IllegalCharacterError

from hitl_gate.review.export import workbook
from hitl_gate.review.export.workbook import write_review_workbook

HEADER = ["case_id", "verdict", "rationale", "reasons", "pd", "flag", "amount", "note"]
ANSWERS = ["verdict", "rationale"]
WIDTHS = {"reasons": 70, "note": 22}
CREATED = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
HOSTILE = [
    "", " ", "  lead", "trail  ", " both ", "a&b<c>d\"e'f", "=HYPERLINK(\"http://x\")", "+1", "-1",
    "@SUM(A1)", "\tTab", "line1\nline2", "crlf\r\nend", "\r", "é ü 中文 😀", "#N/A", "x" * 40_000,
    "rule a fired: income below 2,000; rule b: debt ratio above 0.45", "\u00a0nbsp\u00a0",
    "]]>", "&amp;", "TRUE",
]  # fmt: skip
NUMBERS = [0, 1, -7, 10**20, 2**53 + 1, 0.1, 1e-7, 123456.789, -0.0, 1e300, 5e-324, True, False]


CHOICES = {"verdict": ["approve", "decline", "escalate"]}
GUIDE = [("What", "Answer the yellow columns."), ("Why", " spaced ")]


def _write(
    path: Path,
    rows: list[dict],
    *,
    as_text: bool,
    widths=WIDTHS,
    choices=CHOICES,
    instructions=GUIDE,
    header=HEADER,
) -> Path:
    write_review_workbook(
        path,
        header=header,
        rows=rows,
        answer_columns=ANSWERS,
        choices=choices,
        instructions=instructions,
        created_at=CREATED,
        text_widths=widths,
        as_text=as_text,
    )
    return path


MODIFIED = re.compile(rb"<dcterms:modified[^>]*>[^<]*</dcterms:modified>")


def _parts(path: Path) -> list[tuple[str, bytes]]:
    """Every part of the package, in order (openpyxl stamps `modified` with the save time)."""
    with zipfile.ZipFile(path) as package:
        return [(i.filename, MODIFIED.sub(b"", package.read(i))) for i in package.infolist()]


def _entries(path: Path) -> list[tuple[object, ...]]:
    """Each entry's stored attributes but its time (a save stamps the clock's)."""
    with zipfile.ZipFile(path) as package:
        return [
            (i.filename, i.compress_type, i.external_attr, i.create_system, i.flag_bits)
            for i in package.infolist()
        ]


def _same_bytes(tmp_path: Path, rows: list[dict], widths=WIDTHS, **batch) -> None:
    fast = _parts(_write(tmp_path / "fast.xlsx", rows, as_text=True, widths=widths, **batch))
    reference = _parts(
        _write(tmp_path / "reference.xlsx", rows, as_text=False, widths=widths, **batch)
    )
    assert [name for name, _ in fast] == [name for name, _ in reference]
    assert _entries(tmp_path / "fast.xlsx") == _entries(tmp_path / "reference.xlsx")
    for (name, got), (_, want) in zip(fast, reference, strict=True):
        assert got == want, name


def _rows(values: list) -> list[dict]:
    return [
        {name: values[(i + j) % len(values)] for j, name in enumerate(HEADER)}
        for i in range(len(values))
    ]


def test_hostile_text_numbers_and_blanks_give_the_reference_bytes(tmp_path: Path) -> None:
    rows = _rows([*HOSTILE, *NUMBERS, None])
    _same_bytes(tmp_path, rows)
    _same_bytes(tmp_path, rows, widths={})  # no wrapped column: rows without a height


@pytest.mark.parametrize("count", [0, 1])
def test_no_rows_and_one_row(tmp_path: Path, count: int) -> None:
    _same_bytes(tmp_path, _rows(["a", 1.5, None])[:count])


def test_instructions_and_lists_of_each_batch_give_the_reference_bytes(tmp_path: Path) -> None:
    """One shape (one template), batches differing in everything a batch puts in it."""
    rows = _rows(["a", 2, None, "b c"])
    hostile = [(text, HOSTILE[-1 - i]) for i, text in enumerate(HOSTILE)]
    lists = [
        {"verdict": ["approve"], "rationale": HOSTILE[:12]},
        {"verdict": [], "rationale": ["x", "y"]},
        {"verdict": ["a", "b", "c", "d"], "rationale": []},
        {"verdict": [" x ", "=1", "a, b", 'q"uote'], "rationale": ["#N/A", "TRUE"]},
    ]
    for index, choices in enumerate(lists):
        for instructions in (GUIDE, hostile, [("", ""), ("only", "one")]):
            batch = {"choices": choices, "instructions": instructions}
            _same_bytes(tmp_path, rows[: index + 1], **batch)
    _same_bytes(tmp_path, rows, choices={"rationale": ["r"], "verdict": ["v"]})  # list order
    _same_bytes(tmp_path, rows, instructions=[])  # no instruction: openpyxl's other styles
    _same_bytes(tmp_path, rows, choices={})  # no list either
    for batch in (
        {"instructions": [("a", "x" * 40_000)]},
        {"choices": {"verdict": ["x" * 40_000]}},
    ):
        _same_bytes(tmp_path, rows, **batch)  # truncated as openpyxl does
    for batch in ({"instructions": [("a", "bad\x01")]}, {"choices": {"verdict": ["bad\x01"]}}):
        for as_text in (True, False):  # refused as openpyxl does
            with pytest.raises(IllegalCharacterError):
                _write(tmp_path / "bad.xlsx", rows, as_text=as_text, **batch)


def test_a_shape_is_written_by_openpyxl_once_then_from_its_template(tmp_path: Path) -> None:
    header = [*HEADER, "once"]
    before = workbook._template.cache_info()
    for index in range(3):
        _write(tmp_path / f"{index}.xlsx", _rows(["a", index]), as_text=True, header=header)
    after = workbook._template.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)


def test_templates_of_several_shapes_stay_apart(tmp_path: Path) -> None:
    """Another header (a domain's columns) or widths is another template, in any order."""
    other = [*HEADER[:3], "extra & <odd> 'name'", *HEADER[3:]]
    for header in (HEADER, other, HEADER, other[:-2]):
        rows = [{name: f"{name} {i}" for name in header} for i in range(3)]
        for widths in (WIDTHS, {}, {"reasons": 30}):
            _same_bytes(tmp_path, rows, widths=widths, header=header)


@pytest.mark.slow  # a property suite: `make test`, not test-fast
@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(10**25), max_value=10**25),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF),
                max_size=20,
            ).filter(lambda t: not any(ord(c) < 32 and c not in "\t\n\r" for c in t)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_plain_values_give_the_reference_bytes(values: list) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        _same_bytes(Path(folder), _rows(values))


def test_the_rows_read_back_as_written(tmp_path: Path) -> None:
    rows = _rows(["=1+1", " x ", 2.5, None, True, "a\nb"])
    sheet = load_workbook(_write(tmp_path / "b.xlsx", rows, as_text=True))["cases"]
    assert [c.value for c in sheet[1]] == HEADER
    assert sheet["A2"].value == "'=1+1"  # neutralised, stored as text
    assert sheet.max_row == len(rows) + 1
    assert sheet.auto_filter.ref == f"A1:H{len(rows) + 1}"


def test_other_kinds_and_illegal_text_behave_as_the_reference(tmp_path: Path) -> None:
    # Not a form written as text (NaN, a date): the whole sheet takes the reference path.
    for odd in (float("nan"), datetime(2018, 1, 1)):
        rows = _rows(["a", odd])
        fast = _write(tmp_path / "odd.xlsx", rows, as_text=True)
        reference = _write(tmp_path / "odd_ref.xlsx", rows, as_text=False)
        assert _parts(fast) == _parts(reference)
    for as_text in (True, False):  # a control character openpyxl refuses is refused alike
        with pytest.raises(IllegalCharacterError):
            _write(tmp_path / "bad.xlsx", _rows(["ok", "bad\x01"]), as_text=as_text)

"""Duplicate JSON keys are found by a vectorised screen plus an exact parse of the suspects.

The screen must never let a duplicate through (a test per way a key can hide: depth, escapes,
spacing, a key that looks like a value's tail) and must keep the line, column and row count
the exact check reported.
"""

from __future__ import annotations

import json

import pytest

from hitl_gate.ingest.strict_formats import _candidate_lines, jsonl_problem

CLEAN = b'{"id": "A-1", "amount": 10}\n{"id": "A-2", "amount": 20}\n'


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (b'{"id": "A-3", "amount": 1, "amount": 2}', "amount"),
        (b'{"id": "A-3", "nested": {"x": 1, "x": 2}}', "x"),  # at depth
        (b'{"id": "A-3", "list": [{"y": 1}, {"y": 1, "y": 2}]}', "y"),  # in an array
        (b'{"id": "A-3", "amount": 1, "\\u0061mount": 2}', "amount"),  # written with an escape
        (b'{"id": "A-3", "amount" : 1, "amount":2}', "amount"),  # spacing differs
        (b'{":b": 1, "a": "x", ":b": 2}', ":b"),  # a key starting with a colon
        (b'{"a\\"b": 1, "a\\"b": 2}', 'a"b'),  # an escaped quote inside the key
        (b'{"v": "\\"k\\": 1", "k": 1, "k": 2}', "k"),  # a value that looks like a key
        (b'{"id": "A-3",\t"amount":1,\r"amount":2}', "amount"),  # tab and CR as whitespace
    ],
)
def test_every_duplicate_is_found_with_its_line_and_key(line: bytes, key: str) -> None:
    data = CLEAN + line + b"\n" + CLEAN
    problem = jsonl_problem(data)
    assert problem is not None, line
    assert problem.check == "duplicate_keys" and problem.column == key
    assert problem.message.startswith(f"line 3, column '{key}': the key appears twice")
    assert problem.rows == 5


def test_the_first_duplicate_in_file_order_is_named() -> None:
    data = CLEAN + b'{"b": 1, "b": 2}\n\n{"a": 1, "a": 2}\n'
    problem = jsonl_problem(data)
    assert problem is not None and problem.column == "b" and problem.rows == 4


@pytest.mark.parametrize(
    "data",
    [
        CLEAN,
        b'{"a": {"x": 1}, "b": {"x": 2}}\n',  # the same key in two objects is fine
        b'{"a": "a", "b": "a"}\n',  # values repeating a key name are fine
        b'{"name": "caf\\u00e9", "n": 1}\n',  # an escape in a value only
        b'{"a": 1, "a": \n',  # not JSON: left to the reader
        b"   \n\n",
    ],
)
def test_no_false_refusal(data: bytes) -> None:
    assert jsonl_problem(data) is None


def test_only_suspect_lines_are_parsed() -> None:
    lines = [json.dumps({"id": f"A-{i}", "x": {"id": i}}) for i in range(1000)]
    lines[500] = '{"id": "A-500", "amount": 1, "amount": 2}'
    rows, suspects = _candidate_lines("\n".join(lines).encode())
    # Every line repeats `id` (at two depths): a suspect; the screen errs only to that side.
    assert rows == 1000 and len(suspects) == 1000
    rows, suspects = _candidate_lines(b'{"a": 1}\n{"b": 2, "b": 3}\n\n{"c": 4}\n')
    assert (rows, suspects) == (3, [1])

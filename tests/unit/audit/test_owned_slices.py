"""The seal's ownership split (`seal._owned_only`): a slice whose keys are all owned comes back
as itself, not as a filtered copy, and any stray is still split off.

Arrow's filter copies a table even for an all-true mask; the execution step's output seal held
both copies of each rendered slice through its append (about 260 MB at 622K executions).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from hitl_gate.audit.seal import _owned_only

KEYS = [f"credit/c{i:02d}" for i in range(6)]


def _events() -> pa.Table:
    return pa.table(
        {
            "entity_key": KEYS,
            "content_digest": [f"d{i}" for i in range(6)],
            "body": [f'{{"n":{i}}}' for i in range(6)],
        }
    )


def _asked(owned: set[str]):  # noqa: ANN202
    """The callable form the execution step passes (`StepKeys.owns`)."""
    return lambda keys: pa.array([key in owned for key in keys.to_pylist()], pa.bool_())


@pytest.mark.parametrize("form", ["callable", "array", "texts"])
def test_a_wholly_owned_slice_is_returned_without_a_copy(form: str) -> None:
    events = _events()
    keys = {"callable": _asked(set(KEYS)), "array": pa.array(KEYS), "texts": set(KEYS)}[form]
    mine, strays = _owned_only(events, keys)
    assert mine is events  # the same table: no second copy of the slice's bodies
    assert strays.num_rows == 0 and strays.schema == events.schema


@pytest.mark.parametrize("form", ["callable", "array"])
def test_strays_are_still_split_off(form: str) -> None:
    owned = set(KEYS) - {KEYS[1], KEYS[4]}
    keys = _asked(owned) if form == "callable" else pa.array(sorted(owned))
    mine, strays = _owned_only(_events(), keys)
    assert mine.column("entity_key").to_pylist() == [k for k in KEYS if k in owned]
    assert strays.column("entity_key").to_pylist() == [KEYS[1], KEYS[4]]


def test_an_empty_slice_and_a_slice_owning_nothing() -> None:
    empty = _events().slice(0, 0)
    mine, strays = _owned_only(empty, _asked(set()))
    assert mine.num_rows == 0 and strays.num_rows == 0
    mine, strays = _owned_only(_events(), _asked(set()))
    assert mine.num_rows == 0 and strays.column("entity_key").to_pylist() == KEYS


def test_a_key_the_check_leaves_unanswered_is_a_stray_not_dropped() -> None:
    """A null in the owned mask (a check that could not answer for a key) refuses the row as a
    stray: filtering by the mask and by its inverse dropped it from both, so the row was
    neither sealed nor reported."""
    answers = [True, None, True, False, True, True]
    mine, strays = _owned_only(_events(), lambda keys: pa.array(answers, pa.bool_()))
    assert mine.column("entity_key").to_pylist() == [KEYS[0], KEYS[2], KEYS[4], KEYS[5]]
    assert strays.column("entity_key").to_pylist() == [KEYS[1], KEYS[3]]
    assert strays.column("body").to_pylist() == ['{"n":1}', '{"n":3}']


def test_a_chunked_slice_splits_in_order() -> None:
    """A slice of several Arrow chunks (as the seal renders them) keeps each half's order."""
    events = pa.concat_tables([_events().slice(0, 2), _events().slice(2)])
    assert events.column("entity_key").num_chunks == 2
    owned = {KEYS[0], KEYS[3], KEYS[5]}
    mine, strays = _owned_only(events, pa.array(sorted(owned)))
    assert mine.column("entity_key").to_pylist() == [KEYS[0], KEYS[3], KEYS[5]]
    assert strays.column("entity_key").to_pylist() == [KEYS[1], KEYS[2], KEYS[4]]

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

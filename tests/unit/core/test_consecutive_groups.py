"""`core.slices.consecutive_groups`: how verify's table groups and the trace days are cut."""

from __future__ import annotations

from hitl_gate.core.slices import consecutive_groups


def test_groups_keep_order_and_stay_within_the_limit() -> None:
    sizes = [3, 4, 2, 5, 1, 1]
    groups = consecutive_groups(sizes, float, 7)
    assert groups == [[3, 4], [2, 5], [1, 1]]
    assert [x for group in groups for x in group] == sizes  # nothing lost, nothing reordered


def test_an_item_heavier_than_the_limit_is_a_group_of_its_own() -> None:
    assert consecutive_groups([2, 9, 2], float, 5) == [[2], [9], [2]]
    assert consecutive_groups([9], float, 5) == [[9]]


def test_no_items_give_no_group_and_weightless_items_share_one() -> None:
    assert consecutive_groups([], float, 5) == []
    assert consecutive_groups(["a", "b", "c"], lambda _: 0.0, 5) == [["a", "b", "c"]]

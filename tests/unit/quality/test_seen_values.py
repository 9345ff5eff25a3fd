"""Earlier frames' unique values, looked up by hash: exact under collisions, rolled back exactly,
the same answers as checking against every earlier value stacked (the check it replaced)."""

from __future__ import annotations

import random

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hitl_gate.quality.contract import validate_frame
from hitl_gate.quality.seen_values import SeenValues
from tests.unit.quality.test_contract import CONTRACT, _frame


def _stacked_repeats(frames: list[pl.Series]) -> list[list[bool]]:
    """The old check: each frame's values `is_in` every earlier frame's values, stacked."""
    out, seen = [], pl.Series("v", [], dtype=frames[0].dtype)
    for values in frames:
        out.append(values.is_in(seen.implode()).fill_null(False).to_list())
        seen = pl.concat([seen, values.drop_nulls()], rechunk=True)
    return out


def _random_frames(rng: random.Random, count: int, pool: int) -> list[pl.Series]:
    """`count` frames of ids drawn from a small pool (repeats within and across), some null."""
    return [
        pl.Series(
            "v",
            [
                None if rng.random() < 0.05 else f"id-{rng.randrange(pool)}"
                for _ in range(rng.randrange(0, 40))
            ],
            dtype=pl.String,
        )
        for _ in range(count)
    ]


def _weak_hash(values: pl.Series) -> pl.Series:
    """Four hash values in all: nearly every lookup meets a colliding, different value."""
    return values.hash() % 4


def test_a_hash_collision_is_not_taken_for_a_repeat() -> None:
    seen = SeenValues(hasher=lambda values: pl.Series([7] * values.len(), dtype=pl.UInt64))
    assert seen.repeats(pl.Series(["a", "b"])).to_list() == [False, False]
    # every value has hash 7: only the exact comparison tells "c" from "a" and "b"
    assert seen.repeats(pl.Series(["c", "b", None, "a"])).to_list() == [False, True, False, True]


def test_repeats_match_the_stacked_check_on_random_days_under_weak_and_real_hashes() -> None:
    rng = random.Random(23)
    for hasher in (None, _weak_hash):
        for _ in range(20):
            frames = _random_frames(rng, rng.randrange(1, 25), pool=rng.choice([10, 200]))
            seen = SeenValues() if hasher is None else SeenValues(hasher=hasher)
            got = [seen.repeats(values).to_list() for values in frames]
            assert got == _stacked_repeats(frames)


def test_a_repeat_across_frames_1_and_9_is_found() -> None:
    seen = SeenValues()
    frames = [pl.Series([f"f{i}-{j}" for j in range(100)]) for i in range(10)]
    frames[8] = frames[8].scatter(57, "f0-3")  # the ninth frame repeats the first's row 4
    found = [seen.repeats(values) for values in frames]
    assert [int(f.sum()) for f in found] == [0] * 8 + [1, 0]
    assert found[8].arg_true().to_list() == [57]


@pytest.mark.parametrize("sizes", [[10] * 256, list(range(300, 44, -1)), [1, 2000] * 20])
def test_runs_stay_few_and_each_value_is_merged_few_times(sizes: list[int]) -> None:
    """Each lookup searches every run, and each merge re-sorts what it merges: one run per
    frame, or one run re-sorted per frame, would make the day quadratic again."""
    seen = SeenValues()
    merged = 0
    for i, size in enumerate(sizes):
        before = seen.runs
        seen.repeats(pl.Series([f"f{i}-{j}" for j in range(size)]))
        merged += before + 1 - seen.runs
    total = sum(sizes)
    assert len(seen) == total
    assert seen.runs <= total.bit_length()
    assert merged <= len(sizes)  # a merge per frame at most, amortised
    assert seen.sorted_rows <= total * (total.bit_length() + 1)


def test_the_last_frame_is_never_sorted() -> None:
    """A day of one file (the 1M benchmark day) pays no hashing or sorting for its ids."""
    seen = SeenValues()
    seen.repeats(pl.Series([f"c{i}" for i in range(1000)]))
    assert seen.sorted_rows == 0 and seen.runs == 0
    assert seen.repeats(pl.Series(["c999", "d"])).to_list() == [True, False]
    assert seen.sorted_rows == 1000


def test_truncate_takes_back_exactly_what_was_added_after_the_mark() -> None:
    rng = random.Random(5)
    for hasher in (None, _weak_hash):
        seen = SeenValues() if hasher is None else SeenValues(hasher=hasher)
        kept = _random_frames(rng, 12, pool=300)
        for values in kept:  # merged into a few runs
            seen.repeats(values)
        mark = len(seen)
        for values in _random_frames(rng, 7, pool=600):  # a file that then fails
            seen.repeats(values)
        seen.truncate(mark)
        assert len(seen) == mark
        probe = pl.Series("v", [f"id-{i}" for i in range(600)])
        expected = probe.is_in(pl.concat(kept).drop_nulls().implode())
        assert seen.repeats(probe).to_list() == expected.to_list()


def test_truncate_to_nothing_forgets_everything() -> None:
    seen = SeenValues()
    seen.repeats(pl.Series(["a", "b"]))
    seen.truncate(0)
    assert len(seen) == 0 and seen.runs == 0
    assert seen.repeats(pl.Series(["a"])).to_list() == [False]


def test_a_day_validated_frame_by_frame_equals_it_validated_stacked() -> None:
    """Random frames (case ids repeating within and across them) through `validate_frame` with
    one `earlier`, against the stacked day: the same rows valid, the same failures."""
    rng = random.Random(11)
    frames = []
    for _ in range(9):
        rows = rng.randrange(1, 30)
        ids = [f"c{rng.randrange(60)}" for _ in range(rows)]
        rows_of_four = _frame().sample(rows, with_replacement=True, seed=rows)
        frames.append(rows_of_four.with_columns(pl.Series("case_id", ids)))
    earlier: dict[str, SeenValues] = {}
    valid_parts, failure_parts, offset = [], [], 0
    for frame in frames:
        valid, failures = validate_frame(frame, CONTRACT, "case_id", earlier)
        valid_parts.append(valid)
        failure_parts.append(failures.with_columns(pl.col("_row_index") + offset))
        offset += frame.height
    whole_valid, whole_failures = validate_frame(pl.concat(frames), CONTRACT, "case_id")
    assert_frame_equal(pl.concat(valid_parts), whole_valid)
    assert_frame_equal(pl.concat(failure_parts), whole_failures)
    assert whole_failures.height > 10  # the day does repeat ids across frames

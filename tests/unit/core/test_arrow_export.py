"""A frame's columns cut into chunks at different rows reach Arrow without a copy."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

from hitl_gate.core.arrow_export import arrow_table
from hitl_gate.core.staged_parquet import StagedParquet


def _misaligned() -> pl.DataFrame:
    """Texts in chunks of 2 and 3 rows, beside numbers, lists and dates in one chunk of 5
    (a routed slice's columns come from several stages, cut where each stage was)."""
    texts = pl.concat(
        [pl.DataFrame({"case_id": ["a1", "a2"]}), pl.DataFrame({"case_id": ["b1", "b2", "b3"]})],
        rechunk=False,
    )
    frame = texts.hstack(
        pl.DataFrame(
            {
                "pd": [0.1, None, 0.3, 0.4, 0.5],
                "rules_fired": [["r1"], [], None, ["r2", "r3"], ["r1"]],
                "partition_date": [date(2018, 3, 18)] * 5,
            }
        ).get_columns()
    )
    assert frame.n_chunks("all") == [2, 1, 1, 1]
    return frame


def _addresses(chunk: pa.Array) -> list[int]:
    return [b.address for b in chunk.buffers() if b is not None]


def test_each_column_keeps_its_chunks_and_its_memory() -> None:
    """No column is copied: every Arrow chunk is a Polars chunk's memory as it was before
    the export (`to_arrow()` copies the texts into one chunk, in the frame itself too, to
    align them with the other columns)."""
    frame = _misaligned()
    compat = pl.CompatLevel.newest()
    before = {
        name: [_addresses(c.to_arrow(compat_level=compat)) for c in s.get_chunks()]
        for name, s in frame.to_dict().items()
    }
    table = arrow_table(frame)
    assert {
        name: [_addresses(chunk) for chunk in table.column(name).chunks] for name in frame.columns
    } == before
    assert frame.n_chunks("all") == [2, 1, 1, 1], "the frame itself is left as it was"
    assert table.schema.field("case_id").type == pa.string_view()
    assert_frame_equal(pl.from_arrow(table), frame)  # type: ignore[arg-type]


def test_a_staged_file_of_misaligned_and_empty_frames_reads_back_equal(tmp_path: Path) -> None:
    frame = _misaligned()
    staged = StagedParquet(tmp_path / "day.parquet", tmp_path / "day.tmp")
    staged.write(frame.clear())
    staged.write(frame)
    staged.write(frame.slice(1, 3))
    stored = pl.read_parquet(staged.commit())
    assert_frame_equal(stored, pl.concat([frame, frame.slice(1, 3)]))

"""Dagster's side of processing a day in slices: the sink that writes a step's day files.

How a day is cut and re-assembled (`slice_ranges`, `read_slices`, `OutputSink`) is library
code in `hitl_gate.core.slices`; this module only finds the writer of a step's partitions
through the IO manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from dagster import AssetExecutionContext, AssetKey

from hitl_gate.core import slices
from hitl_gate.core.slices import OutputSink
from pipelines.io_managers import PolarsParquetIOManager


@contextmanager
def output_sink(
    io_manager: PolarsParquetIOManager,
    context: AssetExecutionContext,
    key: AssetKey,
    sliced: bool,
) -> Iterator[OutputSink]:
    """An in-memory sink for a one-slice day, else a writer of the run's partition files.

    Leaving the block on an error removes what was staged; the stored files stay as they were.
    """
    new_writer = partial(io_manager.partition_writer, list(key.path), list(context.partition_keys))
    with slices.output_sink(new_writer, sliced) as sink:
        yield sink

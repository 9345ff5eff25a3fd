"""Benchmark: the reviewer workbooks of a day's review export (`write_review_workbook`).

`python -m bench workbook [--batches N] [--repeats R]`. The review export of N batches of 32
credit cases is run once (untimed) and the arguments it gives `write_review_workbook` for each
batch are kept; then every batch's workbook is written again, timed, through the export's path
(`as_text=True`: the shape's template filled with the batch as text) and through openpyxl
building and saving the whole workbook (`as_text=False`: the reference, the baseline). Both
write the same bytes (tests/unit/review/test_workbook_rows.py). CPU seconds, medians of R.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench.review import CREATED, _cases
from hitl_gate.core.domain import load_domain
from hitl_gate.review.export import batches as batches_module
from hitl_gate.review.export.batches import BatchExport, export_review_batches
from hitl_gate.review.export.workbook import write_review_workbook
from hitl_gate.review.settings import review_settings


def _recorded_batches(root: Path, n_batches: int) -> list[dict[str, Any]]:
    """The keyword arguments the review export gives the workbook writer, one dict a batch."""
    domain = load_domain("consumer_credit")
    base = review_settings(domain)
    queue = base.queues["credit_analyst"].model_copy(update={"batch_size": 32})
    settings = base.model_copy(update={"queues": {**base.queues, "credit_analyst": queue}})
    calls: list[dict[str, Any]] = []

    def record(path: Path, **kwargs: Any) -> None:
        calls.append(kwargs)
        write_review_workbook(path, **kwargs)

    batches_module.write_review_workbook = record  # type: ignore[assignment]
    try:
        export_review_batches(
            _cases(32 * n_batches),
            BatchExport(
                domain=domain,
                batches_dir=root / "batches",
                key=b"b" * 32,
                partition_date=date(2018, 3, 1),
                created_at=CREATED,
                context={"policy_version": "v1"},
                settings=settings,
            ),
        )
    finally:
        batches_module.write_review_workbook = write_review_workbook
    return calls


def _cpu(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench workbook")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        calls = _recorded_batches(root, args.batches)

        def write_all(as_text: bool) -> None:
            for index, kwargs in enumerate(calls):
                write_review_workbook(root / f"{index}.xlsx", **{**kwargs, "as_text": as_text})

        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for as_text in (True, False):
                times[as_text].append(_cpu(lambda as_text=as_text: write_all(as_text)))
    text, reference = (statistics.median(times[k]) for k in (True, False))
    n = len(calls)
    print(f"{n} workbooks, medians of {args.repeats}, CPU seconds")
    print(f"export path (as_text): {text:.3f} s ({1000 * text / n:.1f} ms a workbook)")
    print(f"openpyxl reference:    {reference:.3f} s ({1000 * reference / n:.1f} ms a workbook)")
    print(f"ratio: {reference / text:.1f}x")

"""Benchmark: a day's review export cut into batches (`export_review_batches`).

`python -m bench review_export [--cases N] [--batch-size B] [--repeats R]`. N credit cases
(two queues, some four-eyes) are exported with the shipped masking into batches of B (the
demo's batches hold about a dozen cases), into a fresh folder each repeat; CPU seconds of this
process, medians of R. The figure is compared between code versions by running the same
command in two checkouts (`cd <checkout> && python -m bench review_export`): the export writes
the same files either way (tests/unit/review/test_batch_rows.py and the digest tests).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

from bench.review import CREATED, _cases
from hitl_gate.core.domain import load_domain
from hitl_gate.review.export.batches import BatchExport, export_review_batches
from hitl_gate.review.settings import review_settings


def _day(n: int) -> pl.DataFrame:
    """`bench.review`'s cases, every third in the senior queue and every seventh four-eyes."""
    index = pl.int_range(pl.len())
    return _cases(n).with_columns(
        review_queue=pl.when(index % 3 == 0)
        .then(pl.lit("senior_underwriter"))
        .otherwise(pl.lit("credit_analyst")),
        four_eyes=index % 7 == 0,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=4_000)
    parser.add_argument("--batch-size", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    domain = load_domain("consumer_credit")
    base = review_settings(domain)
    assert base is not None
    queues = {
        name: queue.model_copy(update={"batch_size": args.batch_size})
        for name, queue in base.queues.items()
    }
    settings = base.model_copy(update={"queues": queues})
    cases = _day(args.cases)
    times, count = [], 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="hitl-bench-export-") as root:
            export = BatchExport(
                domain=domain,
                batches_dir=Path(root) / "batches",
                key=b"b" * 32,
                partition_date=date(2018, 3, 1),
                created_at=CREATED,
                context={"policy_version": "v1"},
                settings=settings,
            )
            start = time.process_time()
            count = len(export_review_batches(cases, export))
            times.append(time.process_time() - start)
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"review export: {args.cases} cases, {count} batches: CPU median "
        f"{statistics.median(times):.2f} s ({runs})"
    )


if __name__ == "__main__":
    main()

"""Benchmark: Dagster's event log storing a daily run's asset events, per event.

`python -m bench event_log [--days N] [--repeats R]`. A ten-stage run over N days stores, per
stage and day, a planned event and a materialisation carrying metadata like the pipeline's (a
markdown preview, counts, a JSON summary) plus a step start: `HitlSqliteEventLogStorage` (kept
databases, tables and columns found remembered, a materialisation serialised once) against
Dagster's own `SqliteEventLogStorage` (the baseline), both storing the events one by one into a
fresh folder. Both write the same rows (tests/unit/pipelines/test_event_log_storage.py). CPU
seconds, medians of R.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dagster import AssetKey, AssetMaterialization, EventLogEntry, MetadataValue
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from pipelines.event_log_storage import HitlSqliteEventLogStorage

STAGES = 10
PREVIEW = "| case | pd | band |\n|---|---|---|\n" + "".join(
    f"| APP-{i:06d} | 0.0{i % 9}31 | {'ABCDE'[i % 5]} |\n" for i in range(40)
)


def _events(days: int) -> list[EventLogEntry]:
    events = []
    for stage in range(STAGES):
        key = AssetKey(["consumer_credit", f"stage_{stage}"])
        for day in range(days):
            partition = f"2018-{1 + day // 28:02d}-{1 + day % 28:02d}"
            materialised = AssetMaterialization(
                asset_key=key,
                partition=partition,
                metadata={
                    "rows": 5_000 + day,
                    "quarantined": day % 7,
                    "preview": MetadataValue.md(PREVIEW),
                    "summary": MetadataValue.json({"bands": {b: day for b in "ABCDE"}}),
                    "path": MetadataValue.path(f"/home/warehouse/stage_{stage}/{partition}"),
                },
            )
            for kind, data in (
                (DagsterEventType.STEP_START, None),
                (
                    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                    AssetMaterializationPlannedData(key, partition=partition),
                ),
                (DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialised)),
            ):
                event = DagsterEvent(
                    kind.value, "daily", step_key=f"stage_{stage}", event_specific_data=data
                )
                events.append(
                    EventLogEntry(
                        error_info=None,
                        level=20,
                        user_message="",
                        run_id="run-1",
                        timestamp=1.5e9 + len(events),
                        step_key=f"stage_{stage}",
                        job_name="daily",
                        dagster_event=event,
                    )  # fmt: skip
                )
    return events


def _store(storage_class: type[SqliteEventLogStorage], events: list[EventLogEntry]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        storage = storage_class(str(Path(folder)))
        storage.store_event(events[0])  # the databases created, untimed
        start = time.process_time()
        for event in events[1:]:
            storage.store_event(event)
        spent = time.process_time() - start
        storage.dispose()
    return spent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench event_log")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    events = _events(args.days)
    times: dict[str, list[float]] = {"hitl": [], "dagster": []}
    for _ in range(args.repeats):
        times["hitl"].append(_store(HitlSqliteEventLogStorage, events))
        times["dagster"].append(_store(SqliteEventLogStorage, events))
    hitl, dagster = (statistics.median(times[k]) for k in ("hitl", "dagster"))
    n = len(events) - 1
    print(f"{n} events ({args.days} days x {STAGES} stages), medians of {args.repeats}, CPU s")
    print(f"HitlSqliteEventLogStorage: {hitl:.3f} s ({1000 * hitl / n:.2f} ms an event)")
    print(f"SqliteEventLogStorage:     {dagster:.3f} s ({1000 * dagster / n:.2f} ms an event)")
    print(f"ratio: {dagster / hitl:.1f}x")

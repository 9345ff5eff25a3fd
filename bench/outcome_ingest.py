"""`ingest_outcomes` alone on a copy of a built home's audit file: CPU, wall and peak RSS.

    python -m bench.outcome_ingest --home H --scratch S [--slice-rows N] [--json out]

`H` is a home built through a day (`python -m bench.pipeline _setup`, `bench.generate`, the
daily job through `final_decisions`), read only: its `audit.duckdb` is copied to `S` and the
outcome files of `H/landing/outcomes` are recorded into the copy, as `audit_lineage` does
before it seals (same function, the seal's DuckDB memory limit, `slice_rows` rows a slice),
without Dagster or the seal around it. One run per process, so that its peak is its own: the
kernel's high-water mark (`VmHWM`) is reset just before the call (`/proc/self/clear_refs`),
so imports and the copy do not count. Loop runs in the shell for medians; for a "before"
figure, run this file with `PYTHONPATH` set to a checkout of the older code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.measure import cpu_seconds

_STATUS = Path("/proc/self/status")


def _hwm_mb() -> float:
    """The process's RSS high-water mark (since the last reset), in MB."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outcome_ingest", description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--slice-rows", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from hitl_gate.core.database import audit_connection
    from hitl_gate.core.domain import load_domain
    from hitl_gate.core.settings import DEFAULT_SLICE_ROWS
    from hitl_gate.execution.outcomes import ingest_outcomes
    from pipelines.resources import SEAL_MEMORY_LIMIT

    domain = load_domain("consumer_credit")
    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    db = args.scratch / "audit.duckdb"
    shutil.copyfile(args.home / "audit.duckdb", db)
    folder = args.home / "landing" / domain.outcomes_subdir
    slice_rows = args.slice_rows or DEFAULT_SLICE_ROWS
    with audit_connection(db) as con:
        Path("/proc/self/clear_refs").write_text("5")
        cpu, wall = cpu_seconds(), time.perf_counter()
        added, errors = ingest_outcomes(
            con, domain, folder, "bench", memory_limit=SEAL_MEMORY_LIMIT, slice_rows=slice_rows
        )
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        peak = _hwm_mb()
    figures = {
        "added": added,
        "errors": len(errors),
        "slice_rows": slice_rows,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak),
        "load": os.getloadavg(),
    }
    sys.stdout.write(json.dumps(figures) + "\n")
    if args.json:
        args.json.write_text(json.dumps(figures), encoding="utf-8")
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

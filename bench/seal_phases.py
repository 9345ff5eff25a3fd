"""The `audit_lineage` step on a real home, per phase of its seal: CPU, wall and peak RSS.

    python -m bench.seal_phases --home H --day 2018-03-18 [--limit-gb 6] [--json out]
                                [--profile out]

Runs the daily job's `audit_lineage` stage alone (`bench.memory --only audit_lineage`: its
inputs are stored, so copy a home built through the whole day and restore the copy before
each run) in this process, with the seal's phases wrapped where `run_seal` calls them: the
single chain's seal (`seal_run` on the writer), the pick (`pick_rows`, each table's
`_pick_source`), the segment's seal (`seal_picked`, the `seal_run` inside it), the fold
(`fold_picked`) and the replica refresh (`refresh_replica`: its stamps, table copies and
segment leaves); what is left of the step is the accounting and outcome files (and Dagster's
own work). Peak RSS per phase is exact, not sampled: the kernel's high-water mark
(`VmHWM`) is read and reset (`/proc/self/clear_refs`, 5) at every phase boundary, and each
open phase keeps the largest mark seen while it was open. Nested phases are named by their
path (`seal_picked/seal_run`), and a parent's figures include its children's.

What this answers: which part of the seal grows with the day (run it on a 1M and a 2M day,
and compare the phases' peaks), and which costs the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bench.homes import prepared_home
from bench.measure import cpu_seconds, current_rss_mb, peak_rss_mb

# Per module, the functions of its namespace timed as phases: the seal's (where `run_seal`
# calls them) and what the step does before it (the accounting and the outcome files).
PHASES: dict[str, tuple[str, ...]] = {
    "hitl_gate.audit.run_seal": (
        "seal_run", "pick_rows", "_pick_source", "seal_picked", "fold_picked", "refresh_replica",
    ),
    # The refresh's parts: the stamps read every day's rows (`bench.seal_history`), the
    # copies only the rows added since the last refresh and the new leaves.
    "hitl_gate.audit.replica": ("_stamps", "_copy_table", "_segment_log"),
    "hitl_gate.execution.accounting": (
        "day_accounting", "replace_partition_slice", "ingest_outcomes",
        "seal_days_through_segment",
    ),
    "assets.execution": ("collect_columns",),
}  # fmt: skip
_HWM = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _take_hwm_mb() -> float:
    """The process's RSS high-water mark since the last call, in MB, and reset it to now."""
    for line in _HWM.read_text().splitlines():
        if line.startswith("VmHWM:"):
            mark = int(line.split()[1]) / 1024
            break
    else:  # pragma: no cover - Linux reports VmHWM
        mark = current_rss_mb()
    _CLEAR.write_text("5")
    return mark


@dataclass
class _Open:
    name: str
    cpu: float
    wall: float
    peak: float


@dataclass
class PhaseClock:
    """Per phase path: [CPU s, wall s, peak RSS MB, calls], exact peaks (module docstring)."""

    spent: dict[str, list[float]] = field(default_factory=dict)
    _open: list[_Open] = field(default_factory=list)

    def _mark(self) -> None:
        mark = _take_hwm_mb()
        for phase in self._open:
            phase.peak = max(phase.peak, mark)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._mark()
        path = "/".join([p.name.rsplit("/", 1)[-1] for p in self._open] + [name])
        opened = _Open(path, cpu_seconds(), time.perf_counter(), current_rss_mb())
        self._open.append(opened)
        try:
            yield
        finally:
            self._mark()
            self._open.pop()
            row = self.spent.setdefault(path, [0.0, 0.0, 0.0, 0])
            row[0] += cpu_seconds() - opened.cpu
            row[1] += time.perf_counter() - opened.wall
            row[2] = max(row[2], opened.peak)
            row[3] += 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return run


def wrap_phases(clock: PhaseClock) -> None:
    """Time the phases where their callers call them (the modules' globals, `PHASES`)."""
    import importlib

    for module_name, names in PHASES.items():
        module = importlib.import_module(module_name)
        for name in names:
            setattr(module, name, clock.wrap(name, getattr(module, name)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seal_phases", description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--day", type=date.fromisoformat, required=True)
    parser.add_argument("--pristine", type=Path, help="restored onto --home first")
    parser.add_argument("--limit-gb", type=float, default=6.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="pyinstrument output (.html and .txt)")
    args = parser.parse_args(argv)

    from assets.common import stage_key
    from bench.memory import RssSampler
    from bench.pipeline import DOMAIN, _settings, _start_profiler, _stop_profiler, _warm_imports
    from hitl_gate.app.runner import run_job
    from hitl_gate.core.domain import load_domain
    from pipelines.jobs import daily_job_name

    settings = _settings(prepared_home(args.home, args.pristine))
    domain = load_domain(DOMAIN)
    _warm_imports()
    sampler = RssSampler(limit_mb=args.limit_gb * 1024).start()  # the watchdog only
    clock = PhaseClock()
    wrap_phases(clock)
    profiler = _start_profiler(args.profile)
    with clock.phase("audit_lineage_run"):
        result = run_job(
            settings, daily_job_name(domain), start=args.day, end=args.day,
            only=[stage_key(domain, "audit_lineage")],
        )  # fmt: skip
    _stop_profiler(profiler, args.profile)
    sampler.stop()
    lines = [f"{'phase':<40} {'CPU s':>7} {'wall s':>7} {'peak RSS MB':>12} calls"]
    for path, (cpu, wall, peak, calls) in clock.spent.items():
        lines.append(f"{path:<40} {cpu:7.2f} {wall:7.2f} {peak:12,.0f} {int(calls):5d}")
    lines.append(f"process peak RSS {peak_rss_mb():,.0f} MB, load {os.getloadavg()}")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        figures = {
            "ok": result.success,
            "load": os.getloadavg(),
            "phases": {k: [round(v[0], 2), round(v[1], 2), round(v[2]), int(v[3])]
                       for k, v in clock.spent.items()},
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    if not result.success:
        raise SystemExit("run failed")


if __name__ == "__main__":
    main()

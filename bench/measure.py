"""What one measured run reports: wall time, per-step times from Dagster events, peak memory."""

from __future__ import annotations

import bisect
import os
import resource
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class RunFigures:
    """Figures of one run of one mode (`pipeline` or `baseline`) on one partition day."""

    mode: str
    rows: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stages: dict[str, float] = field(default_factory=dict)
    # CPU seconds per step (`step_cpu`): which step costs more when a repeat's total grows.
    stage_cpu: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far: robust where the machine is shared."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_mb() -> float:
    """Resident set size now, from /proc (psutil is not needed for this one number)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mb()


def step_windows(events: Iterable) -> dict[str, tuple[float, float]]:
    """Start and end timestamps (STEP_START to STEP_SUCCESS/FAILURE) per step key.

    Read from the run's event log (`instance.all_logs`) because those entries carry the
    timestamps Dagster itself records, the same the UI shows per step.
    """
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in events:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = event.event_type_value
        if kind == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return windows


def step_durations(events: Iterable) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS/FAILURE per step key (`step_windows`)."""
    return {step: end - start for step, (start, end) in step_windows(events).items()}


def cpu_at(samples: Sequence[tuple[float, float]], at: float) -> float:
    """The process's CPU seconds at time `at`, interpolated linearly between the two
    (time, CPU seconds) samples around it (the first or last sample outside their span)."""
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, at)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    return c0 + (c1 - c0) * (at - t0) / (t1 - t0) if t1 > t0 else c1


def step_cpu(
    samples: Sequence[tuple[float, float]], windows: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """CPU seconds of the process spent in each step's window (`step_windows`), from a clock
    sampled while the job ran (`bench.memory.RssSampler.cpu`), keyed by stage name in the
    order the steps ran.

    The in-process executor runs one step at a time in this process, so the process's CPU
    clock across a step's window is that step's CPU (plus the sampler's own, about 0.1 %).
    Dagster records no CPU per step; a wall time alone cannot tell a step that grew from one
    that waited for a loaded machine.
    """
    if not samples:
        return {}
    samples = sorted(samples)  # the sampler's last point may be appended out of order
    ordered = sorted(windows.items(), key=lambda kv: kv[1][0])
    return {
        stage_name(key): cpu_at(samples, end) - cpu_at(samples, start)
        for key, (start, end) in ordered
    }


def stage_name(step_key: str) -> str:
    """`consumer_credit__validated_cases` -> `validated_cases` (checks keep their own names)."""
    return step_key.rsplit("__", 1)[-1]


def run_conditions(started: str, load: tuple[float, ...], end: tuple[float, ...]) -> str:
    """The line a benchmark's Markdown ends with: when it started, the cores, the load average
    at its start and end (the machine is shared: figures are read against it)."""
    return (
        f"\nStarted {started}, {os.cpu_count()} cores, load average {load[0]:.1f} "
        f"(end {end[0]:.1f})."
    )

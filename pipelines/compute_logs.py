"""Dagster's local compute logs, with each stream's orphan watcher started without `site`.

For each run, Dagster captures the process's stdout and stderr into files under the home (the
Dagster UI shows them per run) and mirrors each file back to the terminal with `tail -F`. Beside
each `tail` it starts a Python interpreter running `watch_orphans.py`, which kills that `tail`
if the run's process dies without stopping it. That script imports only `os`, `signal`, `sys`
and `time`, yet each interpreter imported `site` and the environment's `.pth` hooks first: about
25 ms of CPU each, two per run. Here the same script runs in an isolated interpreter without
`site` (`python -I -S`): about 8 ms.

Everything else is Dagster's (`LocalComputeLogManager`, `execute_posix_tail`): the captured
files, their names, the completion marker, the `tail` command, the watcher's arguments and how
both are stopped (tests/unit/pipelines/test_compute_logs.py runs both side by side). Dagster's
`DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH` pause is not read here: unset, it is 0. On Windows,
Dagster's own mirroring runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from dagster._core.execution.compute_logs import mirror_stream_to_file, redirect_to_file
from dagster._core.execution.scripts import watch_orphans
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import (
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

# Dagster's watcher script, and the interpreter flags it needs no more than: isolated (no user
# site, no PYTHON* variables), no `site` import.
WATCHER = os.path.abspath(watch_orphans.__file__)
WATCHER_FLAGS = ("-I", "-S")


class HitlLocalComputeLogManager(LocalComputeLogManager):
    """`LocalComputeLogManager` whose orphan watchers start without `site`."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> HitlLocalComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        """As Dagster's: stdout and stderr into the run's files, mirrored to the terminal,
        and the completion marker written once the capture ends."""
        out = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with _mirrored(sys.stdout, out), _mirrored(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))


@contextmanager
def _mirrored(stream: IO[str], path: str) -> Iterator[None]:
    """As Dagster's `mirror_stream_to_file`: `stream` written to `path` while this lasts, the
    file mirrored back to the stream's destination by `tail`, watched for orphaning."""
    if os.name == "nt":
        with mirror_stream_to_file(stream, path):
            yield
        return
    ensure_file(path)
    tail = watcher = None
    try:
        tail = subprocess.Popen(
            ["tail", "-F", "-c", "+0", path], stdout=stream if _fileno(stream) else None
        )
        watcher = subprocess.Popen(
            [sys.executable, *WATCHER_FLAGS, WATCHER, str(os.getpid()), str(tail.pid)]
        )
        with redirect_to_file(stream, path):
            yield
    finally:
        for process in (tail, watcher):
            if process is not None:
                try:
                    process.terminate()
                    process.communicate(timeout=30)
                except OSError:
                    pass


def _fileno(stream: IO[str]) -> int | None:
    """The stream's file descriptor, if it has one (a test's captured stream may not)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None

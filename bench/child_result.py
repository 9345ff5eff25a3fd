"""A measurement run in a child interpreter, its figures read back by the parent.

Each benchmark measures in a fresh interpreter (a clean heap, its own peak RSS, no import
left warm by an earlier run), which prints its figures as one JSON line behind a marker;
the parent runs it and reads the last such line. A child that fails, or prints no figures,
stops the benchmark with the end of its output, so no partial figure is ever reported.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


def run_measuring_child(
    command: Sequence[str],
    mark: str,
    what: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Run `command` and return the JSON of its last stdout line starting with `mark`.

    `what` names the measurement in the error raised (`SystemExit`) when the child exits
    non-zero or prints no line with the mark.
    """
    done = subprocess.run(
        list(command), capture_output=True, text=True, check=False, env=env, cwd=cwd
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(mark)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(lines[-1][len(mark) :])
    return figures

"""Benchmark: the fixed cost of taking in one small returned verdict file.

`python -m bench.intake_files [--rows 12] [--files 40] [--repeats 3]`

A day's batch of `rows` cases is exported, answered and signed once (untimed, as
`bench.review` sets it up: a registry of signed acts, the batch recorded and assigned); then
the same file is taken in `files` times through the one intake path, each time into a fresh
copy of that audit database, on an open connection. Reported: CPU seconds of this process per
file (median of the files; the median of `repeats` such medians), which is what every
intake pays whatever its size: the review tests, the portal and the review loop pay it per
file. The signature is checked by `ssh-keygen` once and remembered per process (as in a test
process), so this is the intake's own work: the earlier-outcome checks, validation, the
batch's members and assignee, the case states, the record and its claimed keys.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.review import _ingest, _setup


def per_file_cpu(rows: int, files: int) -> float:
    """Median CPU seconds of one intake of a `rows`-row file, over `files` intakes."""
    with tempfile.TemporaryDirectory(prefix="bench-intake-files-") as tmp:
        root = Path(tmp)
        source, env = _setup(root, rows)
        _ingest(root, source, env, "warm")  # the signature's check and the imports
        return statistics.median(_ingest(root, source, env, str(i))[1] for i in range(files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    medians = [per_file_cpu(args.rows, args.files) for _ in range(args.repeats)]
    print(
        f"intake of a {args.rows}-row file: {statistics.median(medians) * 1000:.1f} ms CPU "
        f"(medians of {args.files} files: {', '.join(f'{m * 1000:.1f}' for m in medians)})"
    )


if __name__ == "__main__":
    main()

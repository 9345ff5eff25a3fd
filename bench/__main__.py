"""`python -m bench <benchmark> [options]`: pipeline (the daily job vs a baseline), generate."""

from __future__ import annotations

import sys

BENCHMARKS = {
    "pipeline": "bench.pipeline",
    "generate": "bench.generate",
    "backfill": "bench.backfill",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        raise SystemExit(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]")
    from importlib import import_module

    import_module(BENCHMARKS[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    main()

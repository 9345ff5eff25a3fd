"""MLflow store set-up: the blank store's build and a registry lookup, each against a baseline.

`python -m bench.mlflow_store [--repeats R] [--homes N]`; prints a Markdown section for
BENCHMARKS.md. Medians of R rounds, each path warmed up once and interleaved with its baseline
(`bench.features_models.paired_medians`); CPU seconds of this process (the machine is shared:
read the ratios).

1. `blank`: `models.mlflow_store.blank_store`'s build (MLflow's own `_initialize_tables` on a
   private file, journal in memory, no `fsync`) vs the same build with SQLite's defaults (a
   journal file, every commit synced), as it was built before 2026-12-07.
2. `new home`: `configure` + `alias_ref` on N new folders in a process that opened others
   before (what each end-to-end test's home, or each forked run on a fresh home, pays), for
   scale (no baseline).
3. `known home`: `alias_ref` again on a folder this process opened (what every later run
   of a process pays in `case_features`), for scale (no baseline).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.features_models import Paired, paired_medians
from models.mlflow_store import DATABASE_FILE, _sqlite_uri, blank_store
from models.registry import alias_ref

MODEL = "bench_pd"


def synced_blank() -> bytes:
    """The blank store built with SQLite's defaults (the baseline of `blank`)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    with tempfile.TemporaryDirectory(prefix="bench-mlflow-blank-") as folder:
        database = Path(folder) / DATABASE_FILE
        engine = create_sqlalchemy_engine_with_retry(_sqlite_uri(database))
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        return database.read_bytes()


def new_homes(root: Path, count: int) -> None:
    """`alias_ref` on `count` new folders (each gets its store from the blank)."""
    for _ in range(count):
        alias_ref(MODEL, Path(tempfile.mkdtemp(dir=root)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--homes", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as folder:
        root = Path(folder)
        blank = paired_medians(blank_store.__wrapped__, synced_blank, args.repeats)
        blank_store()
        known = root / "known"
        alias_ref(MODEL, known)
        homes = paired_medians(
            lambda: new_homes(root, args.homes),
            lambda: None,
            args.repeats,
        )
        again = paired_medians(lambda: alias_ref(MODEL, known), lambda: None, args.repeats, 20)
    print(report(blank, homes, again, args.homes))


def report(blank: Paired, homes: Paired, again: Paired, count: int) -> str:
    rows = [
        "| path | CPU s | wall s | baseline CPU s | baseline wall s | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|",
        f"| blank store build | {blank.cpu:.3f} | {blank.wall:.3f} | {blank.base_cpu:.3f} | "
        f"{blank.base_wall:.3f} | {blank.cpu_ratio:.2f} |",
        f"| new home (configure + alias_ref), per home | {homes.cpu / count:.4f} | "
        f"{homes.wall / count:.4f} | | | |",
        f"| known home (alias_ref) | {again.cpu:.4f} | {again.wall:.4f} | | | |",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()

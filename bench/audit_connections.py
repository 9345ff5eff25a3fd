"""CPU per audit connection on a demo-sized audit file, for this tree against a baseline tree.

    python -m bench.audit_connections --audit-db FILE --baseline-src DIR [--connections N]
                                      [--repeats R]

`FILE` is a built home's `audit.duckdb` (e.g. one from `hitl demo`), copied per measurement;
`DIR` another checkout (`git archive main | tar -x -C DIR`). Each measurement is a child
process running one tree first on `PYTHONPATH` (alternating trees, so both see the same load),
which opens the copy once untimed, then times N connections of each kind, as a pipeline step
opens them (`core.database.audit_connection`, one query each): `write` (the schema check
included), `read_only`, and `new_key` (a writer whose restriction no kept instance has yet:
a new `readable` folder each, so each builds and restricts a DuckDB instance, as a test's new
home or a run's new segment does). Prints CPU ms per connection (user + system of the child,
every thread; medians of R) and the ratios, and the kept instances' counters.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_MARK = "AUDIT-CONNECTIONS-RESULT "
KINDS = ("write", "read_only", "new_key")
THIS_TREE = Path(__file__).resolve().parents[1]


def child(audit_db: Path, connections: int) -> dict[str, object]:
    """In this process: the three kinds of connection, N each, CPU ms per connection."""
    from hitl_gate.core import kept_instance
    from hitl_gate.core.database import audit_connection

    folder = Path(tempfile.mkdtemp(prefix="bench-audit-connections-"))
    try:
        db = folder / "audit.duckdb"
        shutil.copyfile(audit_db, db)
        with audit_connection(db) as con:  # the first open: instance, blank, schema text
            con.execute("SELECT count(*) FROM audit_log").fetchall()
        out: dict[str, object] = {}
        for kind in KINDS:
            readable = [folder / f"{kind}-{n}" for n in range(connections)]
            for path in readable:
                path.mkdir()
            started = time.process_time()
            for n in range(connections):
                with audit_connection(
                    db,
                    read_only=kind == "read_only",
                    readable=[readable[n]] if kind == "new_key" else [],
                ) as con:
                    con.execute("SELECT count(*) FROM audit_log").fetchall()
            out[kind] = round((time.process_time() - started) / connections * 1000, 3)
        out["stats"] = kept_instance.stats()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(tree: Path, audit_db: Path, connections: int) -> dict[str, object]:
    """One child process with `tree` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    # This file run as a script: the child imports nothing of `bench`, only `tree`'s library.
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    command += ["--audit-db", str(audit_db), "--connections", str(connections)]
    done = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, check=True, timeout=900
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith(RESULT_MARK))
    result: dict[str, object] = json.loads(line.removeprefix(RESULT_MARK))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit-db", type=Path, required=True)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT_MARK + json.dumps(child(args.audit_db.resolve(), args.connections)))
        return
    trees = {"this": THIS_TREE}
    if args.baseline_src is not None:
        trees = {"baseline": args.baseline_src.resolve(), **trees}
    runs: dict[str, list[dict[str, object]]] = {label: [] for label in trees}
    load = os.getloadavg()[0]
    for repeat in range(args.repeats):
        order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
        for label in order:
            runs[label].append(measure(trees[label], args.audit_db.resolve(), args.connections))
    print(f"load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print("| CPU ms per connection | " + " | ".join(trees) + " | ratio |")
    print("|---|" + "---:|" * (len(trees) + 1))
    for kind in KINDS:
        medians = {
            label: statistics.median(float(str(r[kind])) for r in results)
            for label, results in runs.items()
        }
        ratio = medians["this"] / medians["baseline"] if "baseline" in medians else 1.0
        figures = " | ".join(
            f"{medians[label]:.2f} ({', '.join(str(r[kind]) for r in runs[label])})"
            for label in trees
        )
        print(f"| {kind} | {figures} | {ratio:.2f} |")
    for label, results in runs.items():
        print(f"{label}: kept-instance counters {results[-1]['stats']}")


if __name__ == "__main__":
    main()

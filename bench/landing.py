"""The ingest stage of the 1M-case daily pipeline, before and after a change, in the same run.

    python -m bench.landing --base-tree /tmp/base [--rows 1000000] [--repeats 3]

The 1M-case day of `make bench` (`bench.generate.write_day`: the same synthetic files the
pipeline benchmark lands) is ingested by the code of this tree and by the code of another tree
(`--base-tree`, e.g. `git archive` of the commit before the change), alternating, each run in
its own child process: listing and fingerprinting the day folder, reading, typing and
validating every row (`discover_landing_files` + `ingest_files`, what `raw_cases` and
`validated_cases` do before writing to the audit database). Medians of wall and CPU seconds
and their ratio are printed. Only the ingest stages changed, so their ratio bounds the change
in the whole pipeline's time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

DAY = date(2018, 4, 2)
MARK = "BENCH-LANDING "

_CHILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path
import pandera.polars  # warm: imported lazily by the contract stage
from hitl_gate.core.domain import load_domain
from hitl_gate.ingest.landing import discover_landing_files, ingest_files
domain = load_domain("consumer_credit")
root, day = Path(sys.argv[1]), date.fromisoformat(sys.argv[2])
wall, cpu = time.perf_counter(), time.process_time()
files = discover_landing_files(root, domain.landing_subdir, day)
result = ingest_files(files, domain.contract, domain.case_id)
figures = {
    "wall": time.perf_counter() - wall,
    "cpu": time.process_time() - cpu,
    "rows": int(result.files["rows_read"].sum()),
    "accepted": result.accepted.height,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}
print("BENCH-LANDING " + json.dumps(figures))
"""


def _run(tree: Path, landing: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(landing), DAY.isoformat()],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith(MARK))
    return json.loads(line.removeprefix(MARK))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-tree", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from bench.generate import write_day
    from hitl_gate.core.domain import load_domain

    here = Path(__file__).resolve().parent.parent
    trees = {"before": args.base_tree.resolve(), "after": here}
    with tempfile.TemporaryDirectory(prefix="bench_landing_") as tmp:
        landing = Path(tmp)
        write_day(load_domain("consumer_credit"), landing, args.rows, DAY)
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                figures = _run(tree, landing)
                runs[name].append(figures)
                print(f"repeat {repeat + 1} {name}: {json.dumps(figures)}", flush=True)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mb")}
        for name, rs in runs.items()
    }
    ratio_wall = medians["after"]["wall"] / medians["before"]["wall"]
    ratio_cpu = medians["after"]["cpu"] / medians["before"]["cpu"]
    load = os.getloadavg()[0]
    print(
        json.dumps(
            {
                "medians": medians,
                "ratio_wall": ratio_wall,
                "ratio_cpu": ratio_cpu,
                "rows": args.rows,
                "repeats": args.repeats,
                "load1": load,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: loading the people registry (`identity.store.load_registry`) from the demo's acts.

`python -m bench.registry [--repeats R]`. Builds the demo's registry (every demo person
registered by signed acts, as `hitl demo` does) in a temporary home, then measures, in
alternation, the replay as it was (each act's signature checked by one `ssh-keygen -Y verify`
after another) against `load_registry` now, each "cold" (this process never verified a
signature: what every new Dagster step process or CLI command pays) and "warm" (a second load
in the same process). A cold load is simulated by forgetting what the process verified.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from hitl_gate.app.demo_identities import ensure_demo_people
from hitl_gate.core.database import audit_connection
from hitl_gate.core.domain import load_domain
from hitl_gate.core.home import HitlPaths
from hitl_gate.identity import signatures, store
from hitl_gate.identity.registry import Registry


def _forget() -> None:
    signatures._good_signatures.clear()  # noqa: SLF001 - a new process knows nothing
    store._REPLAYED.clear()  # noqa: SLF001


def _sequential(rows: list[tuple]) -> Registry:
    """The replay before this change: verify and apply each act in turn."""
    registry = Registry()
    for _, _, payload, signature in rows:
        act = store.SignedAct(str(payload).encode("utf-8"), str(signature))
        registry, _ = store.replay(registry, act)
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitl-bench-registry-") as folder:
        paths = HitlPaths.at(Path(folder) / "home")
        paths.home.mkdir(parents=True)
        ensure_demo_people(paths, [load_domain("consumer_credit")])
        with audit_connection(paths.audit_db, read_only=True) as con:
            sql = "SELECT seq, act_id, payload, signature FROM people_acts ORDER BY seq"
            rows = con.execute(sql).fetchall()
            times: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for name, load in (
                    ("before", lambda: _sequential(con.execute(sql).fetchall())),
                    ("now", lambda: store.load_registry(con)),
                ):
                    _forget()
                    started = time.perf_counter()
                    cold = load()
                    middle = time.perf_counter()
                    warm = load()
                    ended = time.perf_counter()
                    assert cold.head == warm.head
                    times.setdefault(f"{name} cold", []).append(middle - started)
                    times.setdefault(f"{name} warm", []).append(ended - middle)
    print(f"{len(rows)} acts, {args.repeats} repeats, load average {os.getloadavg()[0]:.1f}")
    for name, values in times.items():
        print(
            f"  {name:12s} median {statistics.median(values) * 1000:8.2f} ms "
            f"(min {min(values) * 1000:.2f}, max {max(values) * 1000:.2f})"
        )


if __name__ == "__main__":
    main()

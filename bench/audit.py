"""Audit benchmarks: `verify` throughput on a 10M-entry log, `trace` latency on 10M decisions.

    python -m bench.audit [--entries 10000000] [--decisions 10000000] [--repeats 3]
                          [--log-dir DIR]   # build the signed log there once, reuse it next time
                          [--decisions 0]   # verify only

Each figure is compared with a baseline measured in the same run on the same data:
- verify: the chain verifier (OpenSSL SHA-256 from Arrow buffers, links as whole columns)
  against recomputing the same hashes with DuckDB's vectorised `sha256()` in one SQL query.
- trace: `trace_case` (ART indexes on case_id, prepared `?` parameters) against the same
  lookup on a copy of the decisions table without indexes.
Medians of the repeats are reported; the machine is shared, so read ratios before absolutes.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from hitl_gate.audit.chain import GENESIS_HASH, fold_bodies
from hitl_gate.audit.events import envelope_sql
from hitl_gate.audit.keys import load_or_create_signing_key, public_key_hex
from hitl_gate.audit.seal import checkpoint_message, export_checkpoints, signed_checkpoint
from hitl_gate.audit.trace import trace_case
from hitl_gate.audit.verify import verify_audit
from hitl_gate.audit.witness import WitnessConfig, publish_checkpoints
from hitl_gate.core.database import audit_connection

RUN_ENTRIES = 100_000  # entries per sealed run (one checkpoint each)


def _median(fn, repeats: int) -> tuple[float, object]:
    return _median_wall_cpu(fn, repeats)[0::2]


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the verify segment processes)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _median_wall_cpu(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of `repeats` calls, and the last result.

    CPU seconds matter here: the machine is shared and each session is its own scheduler
    autogroup, so under load a session gets a fixed share of the cores whatever it runs.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = fn()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def build_log(db: Path, checkpoints: Path, key_file: Path, entries: int) -> str:
    """A signed log of `entries` execution events, one checkpoint per 100k.

    Envelopes are rendered by DuckDB with the sealer's `envelope_sql` and chained with
    `fold_bodies`, as the sealer does: entries have the production size and form.
    """
    key = load_or_create_signing_key(key_file)
    prev, seq = GENESIS_HASH, 0
    with audit_connection(db) as con:
        while seq < entries:
            n = min(RUN_ENTRIES, entries - seq)
            run = f"bench-run-{seq // RUN_ENTRIES}"
            envelope = envelope_sql(
                "'2018-01-02T12:00:00.000000Z'",
                "lpad(printf('%x', i), 64, '0')",
                "'consumer_credit/LC18Q1-' || lpad(i::VARCHAR, 8, '0')",
                "$run",
                "'execution'",
            )
            bodies = con.sql(
                f"SELECT {envelope} AS body FROM range($lo, $hi) r(i) ORDER BY i",
                params={"run": run, "lo": seq, "hi": seq + n},
            ).to_arrow_table()["body"]
            hashes, raws = fold_bodies(prev, bodies)
            table = pa.table(
                {
                    "seq": pa.array(range(seq + 1, seq + n + 1), pa.int64()),
                    "entry_hash": pa.array(hashes, pa.string()),
                    "prev_hash": pa.array([prev, *hashes[:-1]], pa.string()),
                    "body": bodies,
                }
            )
            con.register("b", table)
            con.execute(
                "INSERT INTO audit_log SELECT seq, entry_hash, prev_hash || '|' || body FROM b"
            )
            con.unregister("b")
            cp = signed_checkpoint(
                seq + 1, hashes[-1], raws, run, "2018-01-02T12:00:00.000000Z", key
            )
            con.register("cp", pa.table({k: [v] for k, v in cp.items()}))
            con.execute("INSERT INTO audit_checkpoints BY NAME SELECT * FROM cp")
            con.unregister("cp")
            prev, seq = hashes[-1], seq + n
        export_checkpoints(con, checkpoints)
        publish_checkpoints(con, WitnessConfig(checkpoints.parent / "witness"), checkpoint_message)
    return public_key_hex(key)


def bench_verify(folder: Path, entries: int, repeats: int) -> dict[str, float]:
    """`verify` in one process and with one process per core, against DuckDB's own `sha256()`
    over the entries (hashes only, both cores), on the same log, interleaved per repeat.

    The log is built in `folder` unless a log of `entries` entries is already there.
    """
    db, cps, key_file = folder / "log.duckdb", folder / "checkpoints", folder / "secrets" / "k"
    started = time.perf_counter()
    if db.exists() and key_file.exists():
        public_key = public_key_hex(load_or_create_signing_key(key_file))
    else:
        public_key = build_log(db, cps, key_file, entries)
    build = time.perf_counter() - started
    witness = folder / "witness"
    runs = {
        "verify_one_process": lambda con: verify_audit(
            con, cps, public_key, lineage=False, witness=witness
        ),
        "verify_processes": lambda con: verify_audit(
            con, cps, public_key, lineage=False, workers=os.cpu_count() or 1, witness=witness
        ),
        "duckdb_sha256": lambda con: con.execute(
            "SELECT count(*) FROM audit_log WHERE sha256(entry) <> entry_hash"
        ).fetchall(),
    }
    figures: dict[str, float] = {"entries": entries, "build_s": build}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    with audit_connection(db, read_only=True) as con:
        for _ in range(repeats):
            for name, run in runs.items():
                wall, cpu, result = _median_wall_cpu(lambda run=run: run(con), 1)
                if name.startswith("verify"):
                    assert result.ok and result.entries == entries, result.summary()
                samples[name].append((wall, cpu))
    for name, pairs in samples.items():
        figures[f"{name}_s"] = statistics.median(w for w, _ in pairs)
        figures[f"{name}_cpu_s"] = statistics.median(c for _, c in pairs)
    return figures


def build_decisions(db: Path, decisions: int) -> None:
    """`decisions` cases with executions (and a verdict for 1 in 10) in the real schema."""
    with audit_connection(db) as con:
        con.execute(
            """
            INSERT INTO decisions BY NAME
            SELECT 'consumer_credit' AS domain, 'LC18Q1-' || lpad(i::VARCHAR, 8, '0') AS case_id,
                   DATE '2018-01-01' + (i % 90)::INTEGER AS partition_date,
                   'landing/' || (i % 90) || '.csv' AS source_file, i AS source_row,
                   'm' AS model_name, '1' AS model_version, 0.01 + (i % 97) / 1000 AS pd,
                   600 + i % 200 AS score, 'B' AS risk_band, ['R01', 'R04'] AS reason_codes,
                   '1.0.0' AS policy_version, 'p' AS policy_digest,
                   CASE WHEN i % 10 = 0 THEN 'human_review' ELSE 'auto_approve' END AS route,
                   ['A01'] AS rules_fired, 'bench' AS run_id, now() AS decided_at
            FROM range(?) r(i)
            """,
            [decisions],
        )
        con.execute(
            """
            INSERT INTO executions BY NAME
            SELECT domain, case_id, partition_date, 'approve' AS action,
                   CASE WHEN route = 'human_review' THEN 'reviewer' ELSE 'policy' END
                       AS decided_by, route, 'bench' AS run_id, now() AS executed_at
            FROM decisions
            """
        )
        con.execute(
            """
            INSERT INTO verdicts BY NAME
            SELECT domain, case_id, 'B1' AS batch_id, 'approve' AS verdict, 'rev1' AS reviewer_id,
                   'f' AS file_sha256, 1 AS row_number, now() AS received_at
            FROM decisions WHERE route = 'human_review'
            """
        )
        con.execute("CREATE TABLE decisions_noindex AS SELECT * FROM decisions")


def bench_trace(folder: Path, decisions: int, repeats: int) -> dict[str, float]:
    db = folder / "trace.duckdb"
    started = time.perf_counter()
    build_decisions(db, decisions)
    build = time.perf_counter() - started
    rng = random.Random(7)
    ids = [f"LC18Q1-{rng.randrange(decisions):08d}" for _ in range(20)]

    def ours() -> list[float]:
        out = []
        for case_id in ids:
            t = time.perf_counter()
            assert trace_case(db, case_id, "consumer_credit") is not None
            out.append(time.perf_counter() - t)
        return out

    _, per_call = _median(ours, repeats)
    with audit_connection(db, read_only=True) as con:

        def baseline() -> list[float]:
            out = []
            for case_id in ids[:5]:
                t = time.perf_counter()
                con.execute(
                    "SELECT * FROM decisions_noindex WHERE case_id = ?", [case_id]
                ).fetchall()
                out.append(time.perf_counter() - t)
            return out

        _, base_calls = _median(baseline, repeats)
    return {
        "decisions": decisions,
        "build_s": build,
        "trace_ms": statistics.median(per_call) * 1000,
        "trace_p95_ms": sorted(per_call)[int(len(per_call) * 0.95) - 1] * 1000,
        "unindexed_lookup_ms": statistics.median(base_calls) * 1000,
    }


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--decisions", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-dir", type=Path, help="keep the built log here and reuse it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitl-bench-audit-") as tmp:
        folder = Path(tmp)
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        v = bench_verify(args.log_dir or folder, args.entries, args.repeats)
        n = v["entries"]
        _say(f"verify: {n:,} entries (ready in {v['build_s']:.1f} s); load {_load()}")
        base = v["duckdb_sha256_s"]
        for label, key in (
            ("hitl verify, one process (chain, links, checkpoints + Merkle)", "verify_one_process"),
            (f"hitl verify --workers {os.cpu_count()}", "verify_processes"),
            ("baseline DuckDB sha256() over the entries, hashes only", "duckdb_sha256"),
        ):
            wall, cpu = v[f"{key}_s"], v[f"{key}_cpu_s"]
            _say(
                f"  {label}: {wall:.2f} s = {n / wall:,.0f} entries/s, CPU {cpu:.1f} s; "
                f"baseline/this {base / wall:.2f}x"
            )
        if args.decisions <= 0:
            return
        t = bench_trace(folder, args.decisions, args.repeats)
        _say(f"trace: {t['decisions']:,} decisions (built in {t['build_s']:.1f} s)")
        _say(
            f"  hitl trace_case (indexed, prepared): median {t['trace_ms']:.1f} ms, "
            f"p95 {t['trace_p95_ms']:.1f} ms"
        )
        _say(
            f"  baseline unindexed decision lookup: median {t['unindexed_lookup_ms']:.1f} ms; "
            f"ratio {t['unindexed_lookup_ms'] / t['trace_ms']:.1f}x"
        )


if __name__ == "__main__":
    main()

"""Sealing benchmark: the `audit_lineage` seal of one day of N cases, incremental vs full sweep.

    python -m bench.audit_seal [--cases 1000000] [--repeats 3]

A synthetic day of lineage (N decisions, executions for the automatic and reviewed ones,
adverse-action notices for the declines, review batch cases, input file, accounting) is
written once into the real schema; every measurement then runs on a fresh copy, each in its
own child process so peak RSS is that seal's. Three scenarios per mode:
- `first`: the day is new (every row becomes an event),
- `again`: sealing again with nothing changed,
- `rerun`: the day re-run with identical outcomes (decisions and accounting rewritten with a
  new run id and new timestamps: the volatile columns), which must append nothing.
The baseline, measured in the same run on the same copies, is the full sweep sealing used
before (every lineage row canonicalised by DuckDB, fetched into Python, envelopes built and
chained there); it is kept here only as the reference. `--baseline-src DIR` adds the mode
`baseline`: the incremental seal of another source tree (e.g. `git archive main | tar -x -C
DIR`), run by the same interpreter on the same copies, to price a change to the seal; the
mode `with_inputs` adds to the seal what the execution step now does before acting (the seal
of its inputs and `check_sealed_inputs`, which reads the whole sealed log); the mode
`segments` seals the day as a run does with `HITL_AUDIT_SEGMENTS=on` (insert-once tables on
the single chain, the versioned ones picked into the run's segment, sealed there and folded:
`hitl_gate.audit.run_seal`; `entries` then counts the single chain's only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pyarrow as pa

from bench.child_result import run_measuring_child

RESULT_MARK = "SEAL-RESULT "
SCENARIOS = ("first", "again", "rerun")


def build_day(db: Path, cases: int) -> None:
    """One partition day of `cases` decisions and what follows from them, in the real schema."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(db) as con:
        con.execute(
            """
            INSERT INTO decisions BY NAME
            SELECT 'consumer_credit' AS domain, 'B-' || lpad(i::VARCHAR, 8, '0') AS case_id,
                   DATE '2018-04-02' AS partition_date,
                   TIMESTAMPTZ '2018-04-02 08:00:00+00' + to_microseconds(i * 997) AS event_time,
                   'landing/applications/2018-04-02/applications.csv' AS source_file,
                   sha256('file') AS source_sha256, i + 2 AS source_row,
                   3 AS contract_version, sha256('contract') AS contract_digest,
                   'consumer_credit_v1' AS feature_service,
                   sha256('features' || i::VARCHAR) AS feature_digest,
                   'consumer_credit_scorecard' AS model_name, '1' AS model_version,
                   'a1b2c3d4e5f6' AS model_run_id, sha256('model') AS model_artifact_digest,
                   0.005 + (hash(i) % 100000) / 400000.0 AS pd,
                   450 + hash(i) % 400 AS score, chr(65 + (hash(i) % 6)::INTEGER) AS risk_band,
                   ['RC0' || (i % 7), 'RC1' || (i % 5), 'RC2' || (i % 3)] AS reason_codes,
                   '2.1.0' AS policy_version, sha256('policy') AS policy_digest,
                   CASE WHEN i % 20 = 0 THEN 'human_review'
                        WHEN i % 9 = 0 THEN 'auto_decline' ELSE 'auto_approve' END AS route,
                   'R' || (i % 12) AS route_rule_id, 'RC' || (i % 12) AS route_reason_code,
                   ['R' || (i % 12), 'R' || (i % 5)] AS rules_fired,
                   CASE WHEN i % 20 = 0 THEN 'standard' END AS review_queue,
                   CASE WHEN i % 20 = 0 THEN (i % 3)::INTEGER END AS review_priority,
                   'run-1' AS run_id, TIMESTAMPTZ '2018-04-02 09:00:00+00' AS decided_at
            FROM range(?) r(i)
            """,
            [cases],
        )
        con.execute(
            """
            INSERT INTO executions BY NAME
            SELECT domain, case_id, partition_date,
                   CASE WHEN route = 'auto_decline' THEN 'decline' ELSE 'approve' END AS action,
                   'policy' AS decided_by, route, policy_version, model_version, reason_codes,
                   run_id, decided_at AS executed_at
            FROM decisions WHERE route <> 'human_review'
            """
        )
        con.execute(
            """
            INSERT INTO adverse_actions BY NAME
            SELECT domain, case_id, partition_date, 'policy' AS decided_by,
                   reason_codes, list_transform(reason_codes, lambda x: 'Reason text for ' || x)
                   AS reasons, run_id, decided_at AS issued_at
            FROM decisions WHERE route = 'auto_decline'
            """
        )
        con.execute(
            """
            INSERT INTO review_batch_cases BY NAME
            SELECT 'batch-' || (row_number() OVER (ORDER BY case_id) // 200) AS batch_id,
                   domain, case_id
            FROM decisions WHERE route = 'human_review'
            """
        )
        con.execute(
            """
            INSERT INTO partition_accounting VALUES ('consumer_credit', DATE '2018-04-02',
                ?, 0, ?, ?, true, 'run-1', TIMESTAMPTZ '2018-04-02 09:00:00+00')
            """,
            [cases, cases - cases // 20, cases // 20],
        )
        con.execute("CHECKPOINT")


def rerun_day(db: Path) -> None:
    """An identical re-run of the day: same outcomes, new run id and timestamps."""
    from hitl_gate.core.database import audit_connection

    with audit_connection(db) as con:
        con.execute("CREATE TEMP TABLE again AS SELECT * FROM decisions")
        con.execute("DELETE FROM decisions")
        con.execute(
            "INSERT INTO decisions SELECT * REPLACE ('run-2' AS run_id, now() AS decided_at) "
            "FROM again"
        )
        con.execute("UPDATE partition_accounting SET run_id = 'run-2', recorded_at = now()")


def legacy_seal(con, run_id: str, key, checkpoint_dir: Path) -> int:
    """The full-sweep seal used before (reference only): every row through Python."""
    from hitl_gate.audit.chain import fold_chain, merkle_root
    from hitl_gate.audit.events import EVENT_SOURCES, source_sql
    from hitl_gate.audit.keys import public_key_hex
    from hitl_gate.audit.seal import chain_head, checkpoint_message, export_checkpoints
    from hitl_gate.core.database import transaction

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with transaction(con):
        events = []
        for source in EVENT_SOURCES:
            sql = source_sql(con, source, sha256="sha256")  # DuckDB's, as it was
            if sql is None:
                continue
            rows = con.execute(
                f"SELECT s.* FROM (SELECT ? AS event_type, {sql.entity_key} AS entity_key, "
                f"{sql.content_digest} AS content_digest, {sql.payload_json} AS payload "
                f"FROM {sql.table}) s ANTI JOIN audit_log_index i "
                "ON i.event_type = s.event_type AND i.entity_key = s.entity_key "
                "AND i.content_digest = s.content_digest ORDER BY s.entity_key, s.content_digest",
                [source.event_type],
            ).fetchall()
            seen: set[tuple[str, str]] = set()
            for event_type, entity_key, digest, payload in rows:
                if (entity_key, digest) not in seen:
                    seen.add((entity_key, digest))
                    events.append((event_type, entity_key, digest, payload))
        last_seq, head = chain_head(con)
        if events:
            bodies = (
                '{"at":' + json.dumps(now) + ',"data":' + p + ',"digest":' + json.dumps(d)
                + ',"key":' + json.dumps(k, ensure_ascii=False) + ',"run_id":'
                + json.dumps(run_id) + ',"type":' + json.dumps(t) + "}"
                for t, k, d, p in events
            )  # fmt: skip
            entries, hashes = fold_chain(head, bodies)
            seqs = list(range(last_seq + 1, last_seq + 1 + len(entries)))
            for table, columns in (
                ("audit_log", {"seq": seqs, "entry_hash": hashes, "entry": entries}),
                (
                    "audit_log_index",
                    {
                        "event_type": [e[0] for e in events],
                        "entity_key": [e[1] for e in events],
                        "content_digest": [e[2] for e in events],
                        "seq": seqs,
                    },
                ),
            ):
                con.register("incoming", pa.table(columns))
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
                con.unregister("incoming")
            cp = {
                "first_seq": seqs[0], "last_seq": seqs[-1], "head_hash": hashes[-1],
                "merkle_root": merkle_root(hashes), "run_id": run_id, "created_at": now,
                "public_key": public_key_hex(key),
            }  # fmt: skip
            cp["signature"] = key.sign(checkpoint_message(cp)).hex()
            con.register("incoming", pa.table({k: [v] for k, v in cp.items()}))
            con.execute("INSERT INTO audit_checkpoints BY NAME SELECT * FROM incoming")
            con.unregister("incoming")
    export_checkpoints(con, checkpoint_dir)
    return len(events)


def measure(mode: str, scenario: str, db: Path) -> dict:
    """Child process: the seals of one scenario on `db`; the last one is timed."""
    from bench.measure import cpu_seconds, peak_rss_mb
    from hitl_gate.audit.keys import load_or_create_signing_key
    from hitl_gate.audit.seal import seal_run
    from hitl_gate.core.database import audit_connection

    key = load_or_create_signing_key(db.parent / "secrets" / "k")
    checkpoints = db.parent / "checkpoints"

    def seal(con, run_id: str) -> int:
        if mode == "incremental":
            return seal_run(con, run_id, key, checkpoints).appended
        if mode == "segments":  # the run's versioned rows sealed through its own segment
            from hitl_gate.audit.run_seal import seal_with_segment
            from hitl_gate.audit.run_segments import Segments

            con.close()  # seal_with_segment opens the file itself, twice
            return seal_with_segment(
                partial(audit_connection, db), Segments(db.parent / "segments"),
                f"consumer_credit.{run_id}", run_id, key, checkpoints, owned={},
            ).appended  # fmt: skip
        if mode == "with_inputs":  # the seal plus the execution step's input seal and check
            from hitl_gate.execution.sealed_inputs import check_sealed_inputs, input_sealer

            appended = seal_run(con, run_id, key, checkpoints).appended
            input_sealer(key, checkpoints, None, run_id)(con)
            reviewed = [r[0] for r in con.execute("SELECT case_id FROM verdicts").fetchall()]
            check = check_sealed_inputs(con, "consumer_credit", reviewed, reviewed)
            assert not check.refused and not check.domain_problems
            return appended
        return legacy_seal(con, run_id, key, checkpoints)

    if scenario != "first":  # the day sealed once before (same log either way)
        with audit_connection(db) as con:
            seal_run(con, "run-1", key, checkpoints)
        if scenario == "rerun":
            rerun_day(db)
    rss_before = peak_rss_mb()
    cpu, started = cpu_seconds(), time.perf_counter()
    with audit_connection(db) as con:
        appended = seal(con, "run-2")
    with audit_connection(db) as con:
        entries = int(con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0])
    return {
        "mode": mode,
        "scenario": scenario,
        "wall_s": time.perf_counter() - started,
        "cpu_s": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "appended": appended,
        "entries": entries,
    }


def _child(
    mode: str, scenario: str, template: Path, scratch: Path, baseline_src: Path | None = None
) -> dict:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    db = scratch / "audit.duckdb"
    shutil.copy(template, db)
    measured = "incremental" if mode == "baseline" else mode
    command = [sys.executable, "-m", "bench.audit_seal", "_measure", measured, scenario, str(db)]
    env, cwd = None, None
    if mode == "baseline":
        assert baseline_src is not None, "--baseline-src is needed for the baseline mode"
        env, cwd = {**os.environ, "PYTHONPATH": str(baseline_src)}, str(baseline_src)
    what = f"seal benchmark {mode} {scenario}"
    return {**run_measuring_child(command, RESULT_MARK, what, env=env, cwd=cwd), "mode": mode}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":
        figures = measure(argv[1], argv[2], Path(argv[3]))
        print(RESULT_MARK + json.dumps(figures), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["incremental", "full_sweep"])
    parser.add_argument("--baseline-src", type=Path, help="source tree of the `baseline` mode")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hitl-bench-seal-") as tmp:
        template = Path(tmp) / "template.duckdb"
        started = time.perf_counter()
        build_day(template, args.cases)
        _say(f"{args.cases:,} cases of lineage built in {time.perf_counter() - started:.1f} s")
        results: dict[tuple[str, str], list[dict]] = {}
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                modes = args.modes if repeat % 2 == 0 else list(reversed(args.modes))
                for mode in modes:
                    r = _child(mode, scenario, template, Path(tmp) / "work", args.baseline_src)
                    results.setdefault((mode, scenario), []).append(r)
                    _say(
                        f"  {mode:<11} {scenario:<5} {r['wall_s']:7.2f} s wall "
                        f"{r['cpu_s']:7.2f} s CPU  peak RSS {r['peak_rss_mb']:,.0f} MB  "
                        f"appended {r['appended']:,}"
                    )
        _say("medians:")
        for scenario in args.scenarios:
            cells = []
            for mode in args.modes:
                runs = results[(mode, scenario)]
                wall = statistics.median(r["wall_s"] for r in runs)
                cpu = statistics.median(r["cpu_s"] for r in runs)
                rss = max(r["peak_rss_mb"] for r in runs)
                cells.append(f"{mode} {wall:.2f} s ({cpu:.2f} s CPU, {rss:,.0f} MB)")
            _say(f"  {scenario}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
